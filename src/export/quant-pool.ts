/**
 * Quantization on worker threads: a tensor's rows are independent, so it is cut into chunks
 * of whole rows, quantized on every core, and put back together in order. The caller reads
 * (and merges) the next tensor on the main thread meanwhile.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { GGML_TYPES, type GgmlType } from './gguf-format.js';
import type { QuantJob } from './quant-worker.js';

/** Values per job: large enough that messaging is cheap, small enough to spread a tensor. */
const CHUNK_VALUES = 1 << 22;

/**
 * Starts the worker: the compiled .js as is; from the TypeScript source (tsx, vitest) through
 * a small bootstrap that registers tsx's loader in the worker first (workers do not inherit
 * the parent's loader, and `--import` in a worker's execArgv is not honoured).
 */
function startWorker(): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = new URL(fromSource ? './quant-worker.ts' : './quant-worker.js', import.meta.url);
  if (!fromSource) return new Worker(url);
  // tsx's ESM entry (its package exports map "tsx/esm/api" to it for import).
  const tsxDir = dirname(createRequire(import.meta.url).resolve('tsx/package.json'));
  const api = pathToFileURL(join(tsxDir, 'dist', 'esm', 'api', 'index.mjs')).href;
  const boot = `import(${JSON.stringify(api)}).then((t) => { t.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true });
}

export class QuantPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve(b: Uint8Array): void; reject(e: Error): void }>();
  private nextId = 0;
  private turn = 0;

  /**
   * `threads` workers (default: the machine's cores); 0 quantizes on the calling thread. The
   * workers keep the process alive until close().
   */
  constructor(threads = availableParallelism()) {
    for (let i = 0; i < threads; i++) {
      const w = startWorker();
      w.on('message', (m: { id: number; bytes: Uint8Array }) => {
        this.waiting.get(m.id)?.resolve(m.bytes);
        this.waiting.delete(m.id);
      });
      w.on('error', (err) => {
        for (const p of this.waiting.values()) p.reject(err);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  /**
   * `values` (rows of `ne0`) in `type`. The values are copied before this returns, so the
   * caller may reuse its buffer at once.
   */
  quantize(type: GgmlType, values: Float32Array, ne0: number): Promise<Uint8Array> {
    const t = GGML_TYPES[type];
    if (this.workers.length === 0) return Promise.resolve(t.quantize(values).slice());
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / ne0));
    const parts: Promise<Uint8Array>[] = [];
    for (let start = 0; start < values.length; start += rowsPerChunk * ne0) {
      const chunk = values.slice(start, Math.min(values.length, start + rowsPerChunk * ne0));
      parts.push(this.post(type, chunk));
    }
    return Promise.all(parts).then((chunks) => {
      if (chunks.length === 1) return chunks[0];
      const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      return out;
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }

  private post(type: GgmlType, values: Float32Array): Promise<Uint8Array> {
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length];
    const job: QuantJob = { id, type, values };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage(job, [values.buffer as ArrayBuffer]);
    });
  }
}
