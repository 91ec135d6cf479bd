/**
 * Ctrl-C (SIGINT) or SIGTERM during work whose results are already safe on disk: say what was
 * kept and how to go on, then exit at once (130 / 143, the shell's codes for those signals).
 * The `exit` handlers run: run-folder locks are released and sandbox processes stopped.
 */
export function exitOnInterrupt(kept: () => string): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\nstopped (${signal === 'SIGINT' ? 'Ctrl-C' : signal}): ${kept()}\n`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
