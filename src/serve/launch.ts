/**
 * What `sqlora serve` checks before it loads a model (each failure one line, a UserError):
 * the `--db NAME=FILE|URL` list, the bind address and port (in use?), the CORS origin; then
 * the databases are opened (a file that is not a database or a server that does not answer
 * fails here too).
 */
import { createServer, isIP } from 'node:net';
import { UserError, describeError } from '../util/errors.js';
import type { SqlDatabase } from './database.js';
import { defaultDatabaseName, openDatabase } from './databases.js';

export interface DatabaseFlag {
  name: string;
  spec: string;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** `NAME=FILE|URL` (or a bare FILE|URL, named after the file or the URL's database), names unique. */
export function parseDatabaseFlags(values: readonly string[]): DatabaseFlag[] {
  const out: DatabaseFlag[] = [];
  for (const v of values) {
    // NAME= only when what precedes = is a plain name (a URL's query may hold = too).
    const m = /^([^=/:\\]+)=(.+)$/.exec(v);
    const flag = m ? { name: m[1], spec: m[2] } : { name: defaultDatabaseName(v), spec: v };
    if (!NAME.test(flag.name))
      throw new UserError(
        `--db ${JSON.stringify(v)}: the name "${flag.name}" must be letters, digits, _, . or - (at most 64), e.g. --db shop=shop.sqlite`,
      );
    if (out.some((d) => d.name === flag.name))
      throw new UserError(`--db: the name "${flag.name}" is given twice; name each database once (NAME=FILE|URL)`);
    out.push(flag);
  }
  return out;
}

/** Opens every database, each running up to `concurrency` queries at once (closing those already open when one fails). */
export async function openDatabases(
  flags: readonly DatabaseFlag[],
  concurrency: number,
): Promise<Map<string, SqlDatabase>> {
  const open = new Map<string, SqlDatabase>();
  try {
    for (const f of flags) open.set(f.name, await openDatabase(f.name, f.spec, { concurrency }));
  } catch (err) {
    await closeDatabases(open);
    throw err;
  }
  return open;
}

export async function closeDatabases(dbs: ReadonlyMap<string, SqlDatabase>): Promise<void> {
  await Promise.allSettled([...dbs.values()].map((db) => db.close()));
}

export function checkHost(host: string): void {
  if (host !== 'localhost' && isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host))
    throw new UserError(`--host ${JSON.stringify(host)} is not an address or host name (e.g. 127.0.0.1, ::1, 0.0.0.0)`);
}

/** localhost, ::1 or an IPv4 address in 127/8 (not a name that merely starts with 127.). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export function checkPort(port: number): void {
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535))
    throw new UserError(`--port must be an integer in 0..65535, got ${port}`);
}

/** `--cors`: one origin, scheme://host[:port] with nothing after it. */
export function checkOrigin(origin: string): void {
  let url: URL | null = null;
  try {
    url = new URL(origin);
  } catch {
    // reported below
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.origin !== origin.replace(/\/$/, ''))
    throw new UserError(
      `--cors ${JSON.stringify(origin)} is not an origin like https://app.example.com or http://localhost:3000`,
    );
}

/** Fails with one line when the port cannot be bound (in use, or not allowed), before the model loads. */
export async function probePort(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'is already in use (stop the other server or pick another --port)'
          : err.code === 'EACCES'
            ? 'needs privileges to bind (pick a --port above 1023)'
            : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
              ? 'is not an address of this machine (see --host)'
              : `cannot be bound: ${describeError(err)}`;
      reject(new UserError(`${host}:${port} ${why}`));
    });
    s.listen(port, host, () => s.close(() => resolve()));
  });
}
