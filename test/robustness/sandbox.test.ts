/**
 * The SQL sandbox against hostile and oversized queries: nothing is written, loaded or attached,
 * runaway queries stop at the time limit, huge results are refused as "too large", and a worker
 * that dies is described in words while the next query runs on a fresh one.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executionMatch } from '../../src/eval/execution.js';
import { SqlSandbox, describeWorkerExit } from '../../src/eval/sandbox.js';
import { sandboxWorkers, snapshot, waitFor } from './helpers.js';

let sandbox: SqlSandbox;
let tmp: string;
let db: string;
const CARS = 'test/fixtures/spider/database/car_1/car_1.sqlite';

beforeAll(() => {
  sandbox = new SqlSandbox(1);
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-robust-sandbox-'));
  db = join(tmp, 'concert_singer.sqlite');
  copyFileSync('test/fixtures/spider/database/concert_singer/concert_singer.sqlite', db);
});
afterAll(() => {
  sandbox.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('hostile SQL: refused, and the database folder stays byte-identical', () => {
  const attack = join(tmpdir(), `sqlora-attack-${process.pid}.db`);
  const hostile: [string, RegExp][] = [
    ['DROP TABLE singer', /would modify the database/],
    ["INSERT INTO singer (Name) VALUES ('x') RETURNING *", /would modify the database/],
    ["UPDATE singer SET Name = 'x'", /would modify the database/],
    ['DELETE FROM singer', /would modify the database/],
    ['CREATE TEMP TABLE t (x)', /would modify the database/],
    ['CREATE TABLE t AS SELECT * FROM singer', /would modify the database/],
    [`VACUUM INTO '${attack}'`, /would modify the database/],
    [`ATTACH '${attack}' AS x`, /returns no rows/],
    ["ATTACH ':memory:' AS m", /returns no rows/],
    ['PRAGMA user_version = 7', /would modify the database/],
    ['PRAGMA journal_mode = WAL', /would modify the database/],
    ['PRAGMA query_only = 0', /returns no rows/],
    ['PRAGMA writable_schema = 1', /returns no rows|would modify/],
    ["SELECT load_extension('/tmp/evil')", /not authorized/],
    ['SELECT count(*) FROM singer; DROP TABLE singer', /more than one statement/],
    ['BEGIN IMMEDIATE', /would modify the database|returns no rows/],
    ['REINDEX', /would modify the database/],
    ['ANALYZE', /would modify the database/],
  ];
  it.each(hostile)('%s', async (sql, reason) => {
    const before = snapshot(tmp);
    const out = await sandbox.execute(db, sql, 5000);
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.error).toMatch(reason);
    expect(snapshot(tmp)).toEqual(before);
    expect(existsSync(attack)).toBe(false);
  });

  it('runaway CTEs and cross joins stop at the time limit; the next query runs', async () => {
    for (const sql of [
      'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c',
      'SELECT count(*) FROM singer a, singer b, singer c, singer d, singer e, singer f, singer g, singer h, singer i, singer j, singer k, singer l',
    ]) {
      const t0 = Date.now();
      expect(await sandbox.execute(db, sql, 300)).toEqual({
        ok: false,
        error: 'timed out after 0.30 s',
        timedOut: true,
      });
      expect(Date.now() - t0).toBeLessThan(5000);
    }
    expect(await sandbox.execute(db, 'SELECT count(*) FROM singer', 5000)).toEqual({ ok: true, rows: [['I6']] });
  });
});

describe('oversized results', () => {
  it('a result over 64 MB is a failed example saying "result too large"', async () => {
    const r = await executionMatch(
      sandbox,
      [CARS],
      'SELECT * FROM cars_data',
      'SELECT zeroblob(300000) FROM cars_data',
      {
        timeoutMs: 20_000,
      },
    );
    expect(r).toEqual({
      match: false,
      error: 'result too large (over 64 MB): only queries with small results are compared',
    });
    const text = await sandbox.execute(CARS, 'SELECT hex(zeroblob(40000000)) FROM cars_data', 20_000);
    expect(text).toEqual({
      ok: false,
      error: 'result too large (over 64 MB): only queries with small results are compared',
      timedOut: false,
    });
    // SQLite's own length limit (1e9 bytes) stops bigger values before they are made.
    expect(await sandbox.execute(CARS, 'SELECT length(zeroblob(2000000000))', 5000)).toEqual({
      ok: false,
      error: 'string or blob too big',
      timedOut: false,
    });
  }, 30_000);
});

describe('a worker that dies', () => {
  it('killed mid-query: the example fails saying so in words, and the next query runs on a fresh worker', async () => {
    const pending = sandbox.execute(
      db,
      'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c',
      60_000,
    );
    let workers: number[] = [];
    await waitFor(() => (workers = sandboxWorkers(process.pid)).length > 0, 10_000, 'a worker');
    await new Promise((r) => setTimeout(r, 300));
    for (const p of workers) process.kill(p, 'SIGKILL');
    expect(await pending).toEqual({
      ok: false,
      error: 'the SQL sandbox process was killed (SIGKILL; the system may have run out of memory)',
      timedOut: false,
    });
    expect(await sandbox.execute(db, 'SELECT count(*) FROM singer', 5000)).toEqual({ ok: true, rows: [['I6']] });
  }, 20_000);

  it('a real heap exhaustion reads as out of memory, a crash as a crash with its reason', () => {
    const oom = spawnSync(
      process.execPath,
      ['--max-old-space-size=16', '-e', 'const a = []; for (;;) a.push(new Array(1e5).fill(1.5))'],
      {
        encoding: 'utf8',
      },
    );
    expect(oom.signal).toBe('SIGABRT');
    expect(describeWorkerExit(oom.status, oom.signal, oom.stderr)).toBe(
      'the SQL sandbox process ran out of memory (its heap is capped at 256 MB): the result is too large',
    );
    const crash = spawnSync(process.execPath, ['-e', 'throw new TypeError("bad")'], { encoding: 'utf8' });
    expect(describeWorkerExit(crash.status, crash.signal, crash.stderr)).toBe(
      'the SQL sandbox process crashed (exit code 1): TypeError: bad',
    );
    expect(describeWorkerExit(null, 'SIGTERM', '')).toBe('the SQL sandbox process was killed by signal SIGTERM');
  });
});
