/**
 * npx tsx bench/serve-bench.ts [--shape 1.8b|tiny] [--device cuda|cpu] [--clients 64] [--requests N]
 *                                   [--prompt-len 128] [--max-tokens 128] [--sequential N] [--out FILE.json]
 *
 * The continuous-batching scheduler of `sqlora serve` (src/serve/scheduler.ts) on a Qwen2 model
 * with random weights: `--clients` concurrent clients, each sending its next request as soon as
 * its last one is answered, until `--requests` are done, against the same requests sent one at a
 * time (the first `--sequential` of them). Every request decodes exactly `--max-tokens` greedy
 * tokens (no stop ids), so both modes do the same work per request. Reports new tokens/s of
 * each, their ratio, and the p50/p99 latency (submit to last token) and time to first token.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createBackend } from '../src/backend/select.js';
import type { Qwen2Model } from '../src/model/qwen2.js';
import { Scheduler, type SequenceRequest } from '../src/serve/scheduler.js';
import { UserError } from '../src/util/errors.js';
import { randomModel, randomPrompts, shapeConfig, type ShapeName } from './measure.js';

interface Timed {
  latencyMs: number;
  firstTokenMs: number;
  tokens: number;
}

interface ModeResult {
  requests: number;
  seconds: number;
  newTokensPerSecond: number;
  latencyMs: { p50: number; p99: number };
  firstTokenMs: { p50: number; p99: number };
  decodeSteps: number;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function timedRequest(s: Scheduler, promptIds: number[], maxTokens: number): Promise<Timed> {
  const t0 = performance.now();
  let first = 0;
  const req: SequenceRequest = {
    promptIds,
    maxTokens,
    onToken: () => {
      if (first === 0) first = performance.now();
    },
  };
  const r = await s.submit(req);
  return { latencyMs: performance.now() - t0, firstTokenMs: first - t0, tokens: r.newIds.length };
}

async function runMode(s: Scheduler, prompts: number[][], maxTokens: number, clients: number): Promise<ModeResult> {
  const before = s.stats.steps;
  const results: Timed[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < prompts.length) results.push(await timedRequest(s, prompts[next++], maxTokens));
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const tokens = results.reduce((a, r) => a + r.tokens, 0);
  const lat = results.map((r) => r.latencyMs);
  const ttft = results.map((r) => r.firstTokenMs);
  return {
    requests: results.length,
    seconds,
    newTokensPerSecond: tokens / seconds,
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
    firstTokenMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99) },
    decodeSteps: s.stats.steps - before,
  };
}

const HELP = `usage: npx tsx bench/serve-bench.ts [flags]
  --shape 1.8b|tiny   model shape with random weights (default 1.8b; tiny for a CPU check)
  --device D          cuda or cpu (default cuda)
  --clients N         concurrent clients (default 64)
  --requests N        requests in the concurrent run (default: 2 per client)
  --sequential N      of those, sent one at a time for the baseline (default min(requests, 16))
  --prompt-len N      prompt tokens, +-10% (default 128)
  --max-tokens N      new tokens per request (default 128)
  --quantize nf4      NF4 base (default: dense)
  --out FILE          write every number as JSON`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      shape: { type: 'string', default: '1.8b' },
      device: { type: 'string', default: 'cuda' },
      clients: { type: 'string', default: '64' },
      requests: { type: 'string' },
      sequential: { type: 'string' },
      'prompt-len': { type: 'string', default: '128' },
      'max-tokens': { type: 'string', default: '128' },
      quantize: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return void console.log(HELP);
  const int = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (!(Number.isInteger(n) && n > 0)) throw new UserError(`--${name} must be a positive integer, got ${v}`);
    return n;
  };
  const shape = values.shape as ShapeName;
  if (shape !== '1.8b' && shape !== 'tiny') throw new UserError(`--shape must be 1.8b or tiny, got ${values.shape}`);
  const clients = int('clients', values.clients);
  const requests = int('requests', values.requests ?? String(2 * clients));
  const sequential = Math.min(requests, int('sequential', values.sequential ?? String(Math.min(requests, 16))));
  const promptLen = int('prompt-len', values['prompt-len']);
  const maxTokens = int('max-tokens', values['max-tokens']);
  const cfg = shapeConfig(shape);
  const be = createBackend(values.device!);
  process.stderr.write(`model: ${shape} shape, random weights, on ${be.name}\n`);
  const model: Qwen2Model = randomModel(cfg, be, 1, values.quantize === 'nf4' ? 'nf4' : null);
  const prompts = randomPrompts(requests, promptLen, cfg.vocabSize, 7);
  const capacity = Math.max(...prompts.map((p) => p.length)) + maxTokens;
  const make = (maxBatch: number) =>
    new Scheduler(model, { maxBatch, capacity, maxQueue: requests, stopIds: [], padId: 0 });

  // Warm-up (kernel compilation, first allocations) outside the timings.
  const warm = make(Math.min(clients, 4));
  await Promise.all(prompts.slice(0, 4).map((p) => warm.submit({ promptIds: p, maxTokens: 4 })));
  warm.free();

  const one = make(1);
  process.stderr.write(`sequential: ${sequential} requests one at a time...\n`);
  const seq = await runMode(one, prompts.slice(0, sequential), maxTokens, 1);
  one.free();
  const many = make(clients);
  process.stderr.write(`concurrent: ${requests} requests from ${clients} clients...\n`);
  const conc = await runMode(many, prompts, maxTokens, clients);
  many.free();

  const ratio = conc.newTokensPerSecond / seq.newTokensPerSecond;
  const row = (name: string, r: ModeResult) =>
    `${name.padEnd(12)} ${String(r.requests).padStart(8)} ${r.newTokensPerSecond.toFixed(1).padStart(12)} ${r.latencyMs.p50.toFixed(0).padStart(9)} ${r.latencyMs.p99.toFixed(0).padStart(9)} ${r.firstTokenMs.p50.toFixed(0).padStart(9)} ${r.firstTokenMs.p99.toFixed(0).padStart(9)} ${String(r.decodeSteps).padStart(7)}`;
  console.log(
    `serve scheduler, ${shape} shape on ${be.name}: prompts ${promptLen} +-10%, ${maxTokens} new tokens each, ${clients} clients`,
  );
  console.log('mode         requests  new tok/s   p50 ms    p99 ms  ttft p50  ttft p99   steps');
  console.log(row('one-at-once', seq));
  console.log(row(`${clients} clients`, conc));
  console.log(`throughput ratio: ${ratio.toFixed(2)}x`);
  if (values.out) {
    const report = { shape, device: be.name, clients, promptLen, maxTokens, sequential: seq, concurrent: conc, ratio };
    writeFileSync(values.out, JSON.stringify(report, null, 2) + '\n');
  }
  model.free();
}

main().catch((err: unknown) => {
  process.stderr.write(
    `${err instanceof UserError ? 'error' : 'internal error'}: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exitCode = 1;
});
