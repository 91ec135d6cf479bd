/**
 * One run per output folder: a lock file holding the owner's pid, created atomically (`wx`), so
 * two runs into the same folder cannot interleave their logs. A lock whose pid is no longer
 * alive is stale (its run was killed) and is taken over. Released on every way out: the
 * holder's `release()`, and an `exit` handler for process.exit() paths.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UserError, describeError } from './errors.js';

export const LOCK_FILE = '.sqlora.lock';

interface LockInfo {
  pid: number;
  command: string;
  started: string;
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class RunLock {
  private released = false;
  private readonly onExit = (): void => this.release();

  constructor(readonly path: string) {
    process.once('exit', this.onExit);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    process.removeListener('exit', this.onExit);
    // Only our own lock is removed: a stale-lock takeover by another run must not be undone.
    if (readLock(this.path)?.pid === process.pid) rmSync(this.path, { force: true });
  }
}

function readLock(path: string): LockInfo | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockInfo;
  } catch {
    return null;
  }
}

/** Creates `dir` if needed and locks it for `command`; a live holder makes this a UserError. */
export function acquireRunLock(dir: string, command: string): RunLock {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new UserError(`cannot create the output folder ${dir}: ${describeError(err)}`);
  }
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new UserError(`cannot write in the output folder ${dir}: ${describeError(err)}`);
      const holder = readLock(path);
      if (holder && pidAlive(holder.pid) && holder.pid !== process.pid) {
        throw new UserError(
          `${dir} is in use by another run (sqlora ${holder.command}, pid ${holder.pid}, since ${holder.started}): wait for it to finish, or choose another --out`,
        );
      }
      if (!holder) {
        // A lock file being written this instant, or one left empty by a crash: give its writer a moment.
        if (attempt === 0) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
          continue;
        }
      }
      // Stale: its process is gone. Moved aside atomically, so of two runs taking it over only one gets
      // this very file; one that moved a fresh lock instead (taken meanwhile) puts it back.
      const aside = `${path}.stale-${process.pid}`;
      try {
        renameSync(path, aside);
      } catch {
        continue;
      }
      const moved = readLock(aside);
      if (moved && holder && moved.pid !== holder.pid) renameSync(aside, path);
      else rmSync(aside, { force: true });
      continue;
    }
    const info: LockInfo = { pid: process.pid, command, started: new Date().toISOString() };
    writeSync(fd, JSON.stringify(info) + '\n');
    closeSync(fd);
    return new RunLock(path);
  }
  throw new UserError(`cannot lock ${dir}: ${path} keeps changing; is another run starting there?`);
}

/**
 * Removes `<name>.tmp-<pid>` entries under `dir` (interrupted atomic writes) whose pid is dead;
 * returns the names removed.
 */
export function removeStaleTempEntries(dir: string, pattern: RegExp): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /\.tmp-(\d+)$/.exec(name);
    if (!m || !pattern.test(name) || pidAlive(Number(m[1]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
