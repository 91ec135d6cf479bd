/**
 * The GPU's temperature between the benchmark's measurements. A GPU at its power limit lowers
 * its clocks further when hot, so a side measured right after minutes of the other's load would
 * start at a disadvantage: before each measurement the benchmark waits (up to a limit) until the
 * GPU is back within a few degrees of where it started, and records the temperature it began at.
 * Read with nvidia-smi (GPU 0, the backend's default device); where it is absent, nothing waits.
 */
import { spawnSync } from 'node:child_process';

/** Degrees above the starting temperature that count as settled. */
const MARGIN_C = 3;

export function gpuTemperature(): number | null {
  const r = spawnSync('nvidia-smi', ['--query-gpu=temperature.gpu', '--format=csv,noheader,nounits', '-i', '0'], {
    encoding: 'utf8',
  });
  if (r.error || r.status !== 0) return null;
  const t = Number(r.stdout.trim().split('\n')[0]);
  return Number.isFinite(t) ? t : null;
}

export interface Settled {
  /** Temperature (°C) when the measurement began; null where it cannot be read. */
  start_c: number | null;
  waited_s: number;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Waits until the GPU is at most MARGIN_C above `baseline` or `maxSeconds` have passed, reading it every `pollMs`. */
export function settle(baseline: number | null, maxSeconds: number, pollMs = 2000): Settled {
  const t0 = performance.now();
  let t = gpuTemperature();
  while (baseline !== null && t !== null && t > baseline + MARGIN_C && performance.now() - t0 < maxSeconds * 1000) {
    Atomics.wait(sleepCell, 0, 0, pollMs);
    t = gpuTemperature();
  }
  return { start_c: t, waited_s: (performance.now() - t0) / 1000 };
}
