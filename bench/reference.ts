/**
 * The HF transformers + PEFT side of the benchmark: tools/reference/bench_hf.py in a child
 * process, one process per measurement (each starts with an empty GPU and its own peak), run
 * before sqlora touches the GPU so the two never share it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The script's place relative to this file, in the checkout (bench/) and in a bundle (app/bench/). */
export const HF_SCRIPT = fileURLToPath(new URL('../tools/reference/bench_hf.py', import.meta.url));

export interface HfResult {
  tokens_per_s: number;
  peak_bytes: number;
  device: string;
  versions: Record<string, string>;
  mfu?: number;
  [key: string]: unknown;
}

export type HfOutcome = { ok: true; result: HfResult } | { ok: false; error: string };

/**
 * Python's environment: the bundle's launcher puts the system CUDA folders first on
 * LD_LIBRARY_PATH for sqlora, which could make torch load those instead of the CUDA libraries it
 * ships with; torch gets the caller's value back.
 */
function pythonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  const caller = env.SQLORA_CALLER_LD_LIBRARY_PATH;
  if (caller !== undefined) {
    if (caller) env.LD_LIBRARY_PATH = caller;
    else delete env.LD_LIBRARY_PATH;
  }
  return env;
}

function runPython(python: string, args: string[]): string | null {
  process.stderr.write(`bench: ${python} ${[HF_SCRIPT, ...args].join(' ')}\n`);
  const r = spawnSync(python, [HF_SCRIPT, ...args], { stdio: ['ignore', 'inherit', 'inherit'], env: pythonEnv() });
  if (r.error) return `cannot run ${python}: ${r.error.message}`;
  if (r.status !== 0) return `${python} bench_hf.py exited with ${r.status ?? r.signal}`;
  return null;
}

/** Writes the random model of `shape` to `dir` (skipped when a checkpoint is already there). */
export function saveHfModel(python: string, shape: string, seed: number, dir: string, device: string): string | null {
  if (existsSync(join(dir, 'config.json'))) return null;
  return runPython(python, ['--shape', shape, '--seed', String(seed), '--device', device, '--save-model', dir]);
}

/** One measurement; `args` are bench_hf.py flags (mode, sizes, --model). */
export function runHf(python: string, args: string[], outFile: string): HfOutcome {
  const error = runPython(python, [...args, '--out', outFile]);
  if (error) return { ok: false, error };
  return { ok: true, result: JSON.parse(readFileSync(outFile, 'utf8')) as HfResult };
}
