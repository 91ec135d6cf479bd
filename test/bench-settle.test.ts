/**
 * The benchmark's wait for the GPU to cool between measurements, against a stand-in nvidia-smi
 * on PATH that reports a falling temperature.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { gpuTemperature, settle } from '../bench/gpu-settle.js';

describe('settle', () => {
  let dir = '';
  const path = process.env.PATH;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sqlora-smi-'));
  });
  afterEach(() => {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  });

  /** An nvidia-smi that prints the next of `temps` at each call (the last one from then on). */
  function fakeSmi(temps: number[]): void {
    const counter = join(dir, 'count');
    writeFileSync(counter, '0');
    writeFileSync(
      join(dir, 'nvidia-smi'),
      `#!/bin/sh
n=$(cat ${counter}); echo $((n + 1)) > ${counter}
set -- ${temps.join(' ')}
shift $(( n < $# - 1 ? n : $# - 1 )); echo "$1"
`,
    );
    chmodSync(join(dir, 'nvidia-smi'), 0o755);
    process.env.PATH = `${dir}:${path}`;
  }

  it('waits until the GPU is within 3 degrees of the baseline, and reports where it started', () => {
    fakeSmi([70, 60, 50, 41, 35]);
    const s = settle(38, 30, 1);
    expect(s.start_c).toBe(41);
    expect(gpuTemperature()).toBe(35);
  });

  it('gives up after the time limit', () => {
    fakeSmi([80]);
    const s = settle(30, 0.2, 20);
    expect(s.start_c).toBe(80);
    expect(s.waited_s).toBeGreaterThanOrEqual(0.2);
    expect(s.waited_s).toBeLessThan(5);
  });

  it('does not wait without a baseline or without nvidia-smi', () => {
    fakeSmi([90]);
    expect(settle(null, 30, 1).start_c).toBe(90);
    process.env.PATH = dir.replace(/sqlora-smi-.*/, 'nowhere');
    expect(gpuTemperature()).toBeNull();
    expect(settle(40, 30, 1)).toEqual({ start_c: null, waited_s: expect.any(Number) });
  });
});
