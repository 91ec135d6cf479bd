/**
 * A throwaway PostgreSQL cluster for tests: initdb into a temp dir, a server on loopback on a free
 * port (no Unix socket), trust authentication for the `postgres` role; `stop()` shuts it down and
 * deletes the dir. initdb and postgres refuse to run as root, so as root they run as the
 * `postgres` system user through runuser. Also loads a Spider SQLite database into it.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { readTables } from '../../src/data/sqliteSchema.js';

export interface PgCluster {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  /** A URL for another database of the cluster. */
  urlFor(database: string): string;
  stop(): Promise<void>;
}

/** The bin dir of the newest installed PostgreSQL (Debian's layout), or PG_BIN. */
function findBinaries(): string | null {
  const candidates = process.env.PG_BIN
    ? [process.env.PG_BIN]
    : existsSync('/usr/lib/postgresql')
      ? readdirSync('/usr/lib/postgresql')
          .sort((a, b) => Number(b) - Number(a))
          .map((v) => `/usr/lib/postgresql/${v}/bin`)
      : [];
  return candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'postgres'))) ?? null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Starts a cluster, or returns why it cannot (printed, so the skip says what is missing). */
export async function startPostgres(): Promise<PgCluster | { skip: string }> {
  const bin = findBinaries();
  if (!bin) return skip('PostgreSQL binaries not found (install postgresql, or set PG_BIN)');
  const asRoot = process.getuid?.() === 0;
  let owner: { uid: number; gid: number } | null = null;
  if (asRoot) {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      owner = { uid, gid };
    } catch {
      return skip('running as root and there is no postgres user to run the server as');
    }
  }
  const as = (cmd: string, args: string[]): [string, string[]] =>
    asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  if (asRoot) letOthersTraverse(tmpdir());
  const dir = mkdtempSync(join(tmpdir(), 'sqlora-pg-'));
  const data = join(dir, 'data');
  // The server user must reach the dir (mkdtemp makes it 0700 for root).
  chmodSync(dir, 0o755);
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    const [cmd, args] = as(join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    execFileSync(cmd, args, { stdio: 'pipe' });
  } catch (err) {
    remove();
    return skip(`initdb failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err)}`);
  }
  const port = await freePort();
  const [cmd, args] = as(join(bin, 'postgres'), [
    '-D',
    data,
    '-p',
    String(port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
    '-c',
    'fsync=off',
    '-c',
    'max_connections=20',
  ]);
  const server: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const stop = async () => {
    if (server.exitCode === null && server.signalCode === null) {
      const [c, a] = as(join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate', '-s']);
      try {
        execFileSync(c, a, { stdio: 'ignore' });
      } catch {
        server.kill('SIGKILL');
      }
      await new Promise((resolve) => (server.exitCode !== null ? resolve(null) : server.once('close', resolve)));
    }
    remove();
  };
  for (let i = 0; i < 150; i++) {
    if (server.exitCode !== null) break;
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.end();
      return { url, port, urlFor: (db) => `postgres://postgres@127.0.0.1:${port}/${db}`, stop };
    } catch {
      await client.end().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await stop();
  return skip(`the PostgreSQL server did not start: ${log.trim().split('\n').pop() ?? ''}`);
}

/**
 * The server user must reach its data dir: folders that a test run makes under /tmp (mode 0700,
 * such as vitest's per-run temp root) get search permission for others, not read permission.
 */
function letOthersTraverse(dir: string): void {
  for (let d = resolve(dir); d.startsWith('/tmp/'); d = dirname(d)) chmodSync(d, statSync(d).mode | 0o001);
}

function skip(reason: string): { skip: string } {
  console.log(`PostgreSQL tests skipped: ${reason}`);
  return { skip: reason };
}

/** A SQLite declared type as PostgreSQL's (Spider's data fit these). */
function pgType(declared: string): string {
  if (/INT/i.test(declared)) return 'integer';
  if (/^(VAR)?CHAR\(\d+\)$/i.test(declared)) return declared.toLowerCase();
  if (/REAL|FLOA|DOUB/i.test(declared)) return 'double precision';
  return 'text';
}

/**
 * Creates database `name` and copies a SQLite database's tables, primary and foreign keys and
 * rows into its `schema`. Names are written unquoted, so PostgreSQL folds them to lower case, as
 * a model's unquoted Spider-style names (`StuID`) then resolve.
 */
export async function loadSqliteDatabase(
  cluster: PgCluster,
  name: string,
  sqlitePath: string,
  schema = 'public',
): Promise<void> {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`).catch((err: { code?: string }) => {
    if (err.code !== '42P04') throw err; // already there: another schema is being added
  });
  await admin.end();
  const client = new pg.Client({ connectionString: cluster.urlFor(name) });
  await client.connect();
  const src = new Database(sqlitePath, { readonly: true, fileMustExist: true });
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    const tables = readTables(src);
    for (const t of tables) {
      const pk = t.columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
      const cols = t.columns.map((c) => `${c.name} ${pgType(c.type)}`);
      if (pk.length > 0) cols.push(`PRIMARY KEY (${pk.map((c) => c.name).join(', ')})`);
      for (const u of t.unique) cols.push(`UNIQUE (${u.join(', ')})`);
      await client.query(`CREATE TABLE ${schema}.${t.name} (${cols.join(', ')})`);
      const rows = src.prepare(`SELECT * FROM "${t.name}"`).raw().all() as unknown[][];
      for (const row of rows) {
        const params = row.map((_, i) => `$${i + 1}`).join(', ');
        await client.query(`INSERT INTO ${schema}.${t.name} VALUES (${params})`, row);
      }
    }
    for (const t of tables)
      for (const fk of t.foreignKeys) {
        const ref = fk.refColumns.length > 0 ? `(${fk.refColumns.join(', ')})` : '';
        await client.query(
          `ALTER TABLE ${schema}.${t.name} ADD FOREIGN KEY (${fk.columns.join(', ')}) REFERENCES ${schema}.${fk.table}${ref}`,
        );
      }
  } finally {
    src.close();
    await client.end();
  }
}
