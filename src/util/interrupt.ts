/**
 * Ctrl-C (SIGINT) or SIGTERM during work whose results are already safe on disk: say what was
 * kept and how to go on, then exit at once (130 / 143, the shell's codes for those signals).
 * The `exit` handlers run: run-folder locks are released and sandbox processes stopped.
 */
export function exitOnInterrupt(kept: () => string): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\nstopped (${signal === 'SIGINT' ? 'Ctrl-C' : signal}): ${kept()}\n`);
    process.exit(signalExitCode(signal));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** The shell's exit code for a process ended by `signal` (128 + its number): 130 for SIGINT, 143 for SIGTERM. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

/**
 * A stop asked for by Ctrl-C or SIGTERM (a job scheduler's stop), for work that finishes its
 * current unit and saves before it ends: the first signal sets `signal`, a second one quits at
 * once after printing `atOnce()` (what is kept, how to go on).
 */
export class GracefulStop {
  signal: NodeJS.Signals | null = null;
  private readonly handler = (signal: NodeJS.Signals): void => {
    const name = signal === 'SIGINT' ? 'Ctrl-C' : signal;
    if (this.signal) {
      process.stderr.write(`\nsecond ${name}: quitting at once; ${this.atOnce()}\n`);
      process.exit(signalExitCode(signal));
    }
    this.signal = signal;
    process.stderr.write(`\n${name}: ${this.finishing} (${name} again quits at once)\n`);
  };

  constructor(
    private readonly finishing: string,
    private readonly atOnce: () => string,
  ) {
    process.on('SIGINT', this.handler);
    process.on('SIGTERM', this.handler);
  }

  dispose(): void {
    process.off('SIGINT', this.handler);
    process.off('SIGTERM', this.handler);
  }
}
