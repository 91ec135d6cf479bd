/**
 * Runs SQL that a model wrote against SQLite files, safely: read-only, one statement, rows only,
 * and a wall-clock limit per query; rows come back as comparison keys (the evaluator) or as
 * display cells under a row and byte cap (`ask` and `serve`). better-sqlite3 is synchronous and its native calls cannot be
 * interrupted (not even by Worker.terminate()), so queries run in long-lived child processes that
 * are killed and replaced when a query overruns; evaluation then goes on with a fresh one.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UserError, describeError } from '../util/errors.js';

export interface SandboxRequest {
  id: number;
  dbPath: string;
  sql: string;
  /** Stop reading after this many rows plus one: enough to know the result is bigger. */
  maxRows?: number;
  /** Rows as display cells (see CellTable) instead of comparison keys. */
  cells?: CellLimits;
}

export interface CellLimits {
  /** Rows kept at most; the rest are only counted. */
  maxRows: number;
  /** Bytes of kept values at most, and of any one row: more fails the query as "result too large". */
  maxBytes: number;
}

/** A display cell: integers beyond 2^53 and non-finite reals as strings, blobs as hex strings. */
export type Cell = string | number | null;

export interface CellTable {
  columns: string[];
  rows: Cell[][];
  /** All rows the query returned (rows.length unless truncated). */
  rowCount: number;
  truncated: boolean;
  /** Time the query took in the child process (not counting its start). */
  elapsedMs: number;
}

/** Rows come back with each value as a comparison key (see valueKey in sandboxWorker.ts), or as cells. */
export type SandboxReply =
  | { id: number; ok: true; rows: string[][] }
  | { id: number; ok: true; table: CellTable }
  | { id: number; ok: false; error: string };

type Failure = { ok: false; error: string; timedOut: boolean };
export type QueryOutcome = { ok: true; rows: string[][] } | Failure;
export type TableOutcome = { ok: true; table: CellTable } | Failure;
type ProcessOutcome = Extract<SandboxReply, { ok: true }> | Failure;

const STARTUP_LIMIT_MS = 60_000;

/**
 * Each worker's JavaScript heap, in MB: a query whose result outgrows it (a string of hundreds of
 * MB) ends that worker with "out of memory" instead of taking the machine's memory.
 */
export const SANDBOX_HEAP_MB = 256;

/** How to start the worker: the compiled .js as is, the TypeScript source through tsx's loader. */
function workerCommand(): { path: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const path = fileURLToPath(new URL(fromSource ? './sandboxWorker.ts' : './sandboxWorker.js', import.meta.url));
  const heap = `--max-old-space-size=${SANDBOX_HEAP_MB}`;
  if (!fromSource) return { path, execArgv: [heap] };
  const loader = createRequire(import.meta.url).resolve('tsx');
  return { path, execArgv: [heap, '--import', pathToFileURL(loader).href] };
}

/** Why a worker ended, in words, from its exit code or signal and the end of its stderr. */
export function describeWorkerExit(code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  if (/heap out of memory|Reached heap limit|Allocation failed|out of memory/i.test(stderr))
    return `the SQL sandbox process ran out of memory (its heap is capped at ${SANDBOX_HEAP_MB} MB): the result is too large`;
  if (signal === 'SIGKILL')
    return 'the SQL sandbox process was killed (SIGKILL; the system may have run out of memory)';
  if (signal === 'SIGABRT' || signal === 'SIGSEGV' || signal === 'SIGBUS')
    return `the SQL sandbox process crashed (${signal})${stderr.trim() ? ': ' + lastLine(stderr) : ''}`;
  if (signal !== null) return `the SQL sandbox process was killed by signal ${signal}`;
  return `the SQL sandbox process crashed (exit code ${code})${stderr.trim() ? ': ' + lastLine(stderr) : ''}`;
}

interface Pending {
  id: number;
  child: ChildProcess;
  resolve: (o: ProcessOutcome) => void;
  timer?: NodeJS.Timeout;
}

/** One child process; it runs one query at a time. */
class SandboxProcess {
  private child: ChildProcess | null = null;
  private ready: Promise<void> | null = null;
  private pending: Pending | null = null;
  private stderrTail = '';

  async run(req: SandboxRequest, timeoutMs: number): Promise<ProcessOutcome> {
    try {
      await this.start();
    } catch (err) {
      // Without a working sandbox no example can be scored: stop the run rather than fail each one.
      throw new UserError(`cannot start the SQL sandbox process: ${describeError(err)}`);
    }
    const child = this.child;
    if (!child)
      return { ok: false, error: 'the SQL sandbox process exited before the query was sent', timedOut: false };
    return new Promise<ProcessOutcome>((resolve) => {
      const pending: Pending = { id: req.id, child, resolve };
      pending.timer = setTimeout(() => {
        this.settle({ ok: false, error: `timed out after ${formatSeconds(timeoutMs)}`, timedOut: true });
        this.kill();
      }, timeoutMs);
      this.pending = pending;
      child.send(req);
    });
  }

  kill(): void {
    const child = this.child;
    this.child = null;
    this.ready = null;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const { path, execArgv } = workerCommand();
    const child = fork(path, [], { execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.child = child;
    this.stderrTail = '';
    // A send to a process that just died reports here; its 'exit' settles the query.
    child.on('error', () => undefined);
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    this.ready = new Promise<void>((resolve, reject) => {
      const startup = setTimeout(() => {
        this.kill();
        reject(new Error(`the SQL sandbox process did not start within ${STARTUP_LIMIT_MS / 1000} s`));
      }, STARTUP_LIMIT_MS);
      child.on('message', (msg: SandboxReply | { ready: true }) => {
        if ('ready' in msg) {
          clearTimeout(startup);
          resolve();
        } else if (this.pending && msg.id === this.pending.id) {
          this.settle(msg.ok ? msg : { ok: false, error: msg.error, timedOut: false });
        }
      });
      child.on('close', (code, signal) => {
        clearTimeout(startup);
        if (this.child === child) {
          this.child = null;
          this.ready = null;
        }
        const why = describeWorkerExit(code, signal, this.stderrTail);
        reject(new Error(why));
        // Exiting while its query ran means the query crashed it (e.g. out of memory on a huge result).
        if (this.pending?.child === child) this.settle({ ok: false, error: why, timedOut: false });
      });
    });
    return this.ready;
  }

  private settle(outcome: ProcessOutcome): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    clearTimeout(p.timer);
    p.resolve(outcome);
  }
}

// One exit hook for every open sandbox (serve opens one per SQLite database): no child outlives us.
const openSandboxes = new Set<SqlSandbox>();
process.on('exit', () => {
  for (const s of [...openSandboxes]) s.close();
});

/** A small pool of sandbox processes; `execute` queues when all are busy. */
export class SqlSandbox {
  private readonly idle: SandboxProcess[] = [];
  private readonly all: SandboxProcess[] = [];
  private readonly waiting: ((p: SandboxProcess) => void)[] = [];
  private nextId = 1;
  private closed = false;

  constructor(readonly size = 2) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`sandbox size must be a positive integer, got ${size}`);
    for (let i = 0; i < size; i++) {
      const p = new SandboxProcess();
      this.all.push(p);
      this.idle.push(p);
    }
    openSandboxes.add(this);
  }

  /**
   * Runs one statement on a read-only connection to `dbPath`, giving up after `timeoutMs`.
   * With `maxRows`, at most maxRows + 1 rows come back.
   */
  async execute(dbPath: string, sql: string, timeoutMs: number, maxRows?: number): Promise<QueryOutcome> {
    const out = await this.run({ dbPath, sql, ...(maxRows !== undefined ? { maxRows } : {}) }, timeoutMs);
    if (!out.ok) return out;
    return 'rows' in out
      ? { ok: true, rows: out.rows }
      : { ok: false, error: 'the sandbox sent cells', timedOut: false };
  }

  /** Runs one statement like `execute`, the rows as display cells within `limits`. */
  async table(dbPath: string, sql: string, timeoutMs: number, limits: CellLimits): Promise<TableOutcome> {
    const out = await this.run({ dbPath, sql, cells: limits }, timeoutMs);
    if (!out.ok) return out;
    return 'table' in out
      ? { ok: true, table: out.table }
      : { ok: false, error: 'the sandbox sent keys', timedOut: false };
  }

  private async run(req: Omit<SandboxRequest, 'id'>, timeoutMs: number): Promise<ProcessOutcome> {
    if (this.closed) throw new Error('SqlSandbox is closed');
    const proc = this.idle.pop() ?? (await new Promise<SandboxProcess>((resolve) => this.waiting.push(resolve)));
    try {
      return await proc.run({ id: this.nextId++, ...req }, timeoutMs);
    } finally {
      const next = this.waiting.shift();
      if (next) next(proc);
      else this.idle.push(proc);
    }
  }

  /** Stops every child process; call when done so the parent can exit. */
  close(): void {
    this.closed = true;
    openSandboxes.delete(this);
    for (const p of this.all) p.kill();
  }
}

/** A time limit as messages print it: `2 s`, `0.30 s`. */
export function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(2)} s`;
}

/** The line of a crash report that names the error, not a line of its native stack dump. */
function lastLine(text: string): string {
  const lines = text
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^\d+: 0x[0-9a-f]+/.test(l) && !/^Node\.js v/.test(l));
  return lines.findLast((l) => /error\b/i.test(l)) ?? lines[lines.length - 1] ?? 'no message';
}
