/**
 * Output paths checked before the work starts, so an hour of evaluation is not lost to a
 * missing folder or a name that is a directory.
 */
import { accessSync, constants, existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from './errors.js';

/** `path` can be written as a file: its folder exists and is writable, and it is not a directory. */
export function checkWritableFile(path: string, what: string): void {
  const dir = dirname(path);
  if (!existsSync(dir)) throw new UserError(`${what} ${path}: the folder ${dir} does not exist; create it first`);
  if (!statSync(dir).isDirectory()) throw new UserError(`${what} ${path}: ${dir} is not a folder`);
  if (existsSync(path)) {
    if (statSync(path).isDirectory())
      throw new UserError(
        `${what} ${path} is a folder; give a file name (e.g. ${path.replace(/\/+$/, '')}/results.json)`,
      );
    try {
      accessSync(path, constants.W_OK);
    } catch {
      throw new UserError(`${what} ${path} is not writable`);
    }
    return;
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UserError(`${what} ${path}: the folder ${dir} is not writable`);
  }
}

/** Writes a file beside its final name and renames it into place, so a half-written one never looks complete. */
export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.partial-${process.pid}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
