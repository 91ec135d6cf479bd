import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubReachable } from '../src/hub/reachability.js';
import { buildCudaEmulator } from '../tools/cuda-emulator/build.js';

const run = promisify(execFile);

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve(`http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`);
    }),
  );
}

/** An address nothing listens on: a port just released. */
async function closedEndpoint(): Promise<string> {
  const s = createServer();
  const url = await listen(s);
  await new Promise((r) => s.close(r));
  return url;
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `sqlora doctor` as a user runs it, in a clean environment (fresh caches, no token unless given). */
async function doctor(args: string[], env: Record<string, string>): Promise<Result> {
  const home = mkdtempSync(join(tmpdir(), 'sqlora-doctor-'));
  const base = {
    PATH: process.env.PATH ?? '',
    HOME: home,
    HF_HOME: join(home, 'hf'),
    XDG_CACHE_HOME: join(home, 'cache'),
  };
  try {
    const r = await run(process.execPath, ['bin/sqlora.js', 'doctor', ...args], { env: { ...base, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let hub: Server;
let hubUrl: string;
let heads = 0;

beforeAll(async () => {
  hub = createServer((req, res) => {
    if (req.method === 'HEAD') heads++;
    res.writeHead(req.url === '/' ? 200 : 404).end();
  });
  hubUrl = await listen(hub);
});
afterAll(() => new Promise((r) => hub.close(r)));

describe('hubReachable', () => {
  it('reports the HTTP status of a HEAD to the endpoint', async () => {
    const before = heads;
    const r = await hubReachable(hubUrl, 2000);
    expect(r).toMatchObject({ ok: true, status: 200 });
    expect(heads).toBe(before + 1);
  });

  it('reports a refused connection and a silent endpoint', async () => {
    expect(await hubReachable(await closedEndpoint(), 2000)).toEqual({ ok: false, error: 'ECONNREFUSED' });
    const silent = createServer(() => {}); // accepts, never answers
    const url = await listen(silent);
    expect(await hubReachable(url, 200)).toEqual({ ok: false, error: 'no answer within 200 ms' });
    silent.closeAllConnections();
    await new Promise((r) => silent.close(r));
  });
});

describe('sqlora doctor', () => {
  it('on a machine without a GPU: no GPU, CPU fallback, exit 1', async () => {
    const r = await doctor([], { HF_ENDPOINT: hubUrl });
    if (/^ok {4}GPU/m.test(r.stdout)) return console.log('skipped: this machine has an NVIDIA driver');
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`ok    Node.js             ${process.versions.node}`);
    expect(lines[1]).toBe(
      'fail  GPU                 no NVIDIA GPU: sqlora falls back to the CPU (--device cpu): fine for `sqlora demo` and tiny models, far too slow to train the 1.8B model',
    );
    expect(lines[2]).toMatch(
      /^ {26}fix: on a machine with an NVIDIA GPU of compute capability 8.0 or newer: CUDA: cannot load the NVIDIA driver library/,
    );
    expect(r.stdout).toMatch(/^warn {2}NVRTC {15}not loaded$/m);
    expect(r.stdout).toContain(
      'warn  GPU memory          no GPU to measure; training Qwen/Qwen1.5-1.8B-Chat (NF4) peaks at 11.79 GiB',
    );
    expect(r.stdout).toMatch(new RegExp(`^ok {4}Hugging Face Hub {4}${hubUrl} answers \\(HTTP 200, \\d+ ms\\)$`, 'm'));
    expect(r.stdout).toContain('ok    Hub token           not set: needed only for gated or private models');
    expect(r.stdout).toMatch(/^ok {4}kernel cache .*sqlora\/kernels \(empty: the first GPU run compiles the kernels/m);
    expect(r.stderr).toBe('error: doctor: the main job cannot run here (failed: GPU)\n');
  }, 30_000);

  it('--json on the CUDA emulator: the device, library versions, memory; an unreachable Hub; the token never shown', async () => {
    const endpoint = await closedEndpoint();
    const r = await doctor(['--json'], {
      SQLORA_CUDA_EMULATOR: buildCudaEmulator(),
      HF_ENDPOINT: endpoint,
      HF_TOKEN: 'hf_secret_never_printed',
    });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toContain('hf_secret_never_printed');
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string; detail: string }[] };
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(report.ok).toBe(false);
    expect(by.GPU.status).toBe('ok');
    expect(by.GPU.detail).toMatch(
      /^sqlora CUDA emulator \(CPU\), compute capability 8\.0, 8\.0 GiB; driver CUDA 12\.8 \(/,
    );
    expect(by.cuBLAS).toMatchObject({ status: 'ok' });
    expect(by.cuBLAS.detail).toMatch(/^12\.8\.0 \(/);
    expect(by.NVRTC.status).toBe('ok');
    expect(by['GPU memory']).toEqual({
      name: 'GPU memory',
      status: 'warn',
      detail:
        '8.0 GiB free; training Qwen/Qwen1.5-1.8B-Chat (NF4) peaks at 11.79 GiB, 3.42 GiB with activation recompute',
      fix: 'train with --max-activation-gib 4, or a smaller --batch-size',
    });
    expect(by['Hugging Face Hub']).toMatchObject({
      status: 'fail',
      detail: `${endpoint} unreachable (ECONNREFUSED)`,
    });
    expect(by['Hub token']).toEqual({
      name: 'Hub token',
      status: 'ok',
      detail: 'set (the HF_TOKEN environment variable)',
    });
    expect(r.stderr).toBe('error: doctor: the main job cannot run here (failed: Hugging Face Hub)\n');
  }, 60_000);
});
