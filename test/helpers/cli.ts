/** Spawns `bin/sqlora.js <command> ...` and collects its exit code and output. */
import { spawn, type ChildProcess } from 'node:child_process';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Called once the process runs, e.g. to send it a signal. */
  onSpawn?(child: ChildProcess): void;
  env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin, which is then closed (default: no stdin). */
  input?: string;
}

export function sqlora(command: string, args: string[], opts: CliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/sqlora.js', command, ...args], {
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    opts.onSpawn?.(child);
  });
}
