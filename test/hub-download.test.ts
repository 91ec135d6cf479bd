import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resolveModel, type ResolveModelOptions } from '../src/hub/download.js';
import { expectQwen2Tensors, openCheckpoint, saveCheckpoint } from '../src/model/checkpoint.js';
import { loadModelConfig, parseModelConfig } from '../src/model/config.js';
import { hostTensor, numel, type HostTensor } from '../src/tensor/tensor.js';

const COMMIT = '4f1a9c2e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39';
const TOKEN = 'hf_testtoken_9f8e7d6c5b4a';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-hub-'));

interface RepoFile {
  path: string;
  data: Buffer;
  lfs: boolean;
}
/** What the fake Hub serves: a real tiny checkpoint plus files a checkpoint does not need. */
const repoFiles: RepoFile[] = [];
const requests: Array<{ url: string; auth?: string; range?: string }> = [];
/** Bytes of model.safetensors to send before dropping the connection (once), for the resume test. */
let dropAfter: number | undefined;
let server: Server;
let endpoint = '';

const gitOid = (data: Buffer): string => createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}

/** Serves the Hub URLs @huggingface/hub and our downloader use, shaped like huggingface.co's. */
function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x');
  requests.push({ url: url.pathname, auth: req.headers.authorization, range: req.headers.range });
  const authorized = (repo: string): boolean =>
    repo !== 'acme/private' || req.headers.authorization === `Bearer ${TOKEN}`;
  let m = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/);
  if (m) {
    const [, repo, rev] = m;
    if (!['acme/tiny', 'acme/private'].includes(repo) || !authorized(repo))
      return json(res, 401, { error: 'Repository Not Found for url: ' + url });
    if (rev !== 'main' && rev !== COMMIT) return json(res, 404, { error: `Revision Not Found for url: ${url}` });
    return json(res, 200, {
      _id: '65a0',
      id: repo,
      sha: COMMIT,
      private: repo === 'acme/private',
      downloads: 0,
      likes: 0,
      lastModified: '2024-02-03T00:00:00.000Z',
    });
  }
  m = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([0-9a-f]{40})$/);
  if (m) {
    if (!authorized(m[1]) || url.searchParams.get('recursive') !== 'true')
      return json(res, 401, { error: 'unexpected' });
    return json(
      res,
      200,
      repoFiles.map((f) => ({
        type: 'file',
        path: f.path,
        oid: gitOid(f.lfs ? Buffer.from('pointer') : f.data),
        size: f.lfs ? 134 : f.data.length,
        ...(f.lfs ? { lfs: { oid: sha256(f.data), size: f.data.length, pointerSize: 134 } } : {}),
      })),
    );
  }
  m = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([0-9a-f]{40})\/(.+)$/);
  if (m && authorized(m[1])) {
    const file = repoFiles.find((f) => f.path === decodeURIComponent(m![3]));
    if (!file) return json(res, 404, { error: 'Entry not found' });
    const range = req.headers.range?.match(/^bytes=(\d+)-$/);
    const start = range ? Number(range[1]) : 0;
    const body = file.data.subarray(start);
    res.writeHead(range ? 206 : 200, {
      'Content-Length': body.length,
      ...(range ? { 'Content-Range': `bytes ${start}-${file.data.length - 1}/${file.data.length}` } : {}),
    });
    if (file.path === 'model.safetensors' && dropAfter !== undefined) {
      const cut = dropAfter;
      dropAfter = undefined;
      res.write(body.subarray(0, cut), () => res.destroy());
      return;
    }
    return void res.end(body);
  }
  json(res, 404, { error: 'not found' });
}

const config = parseModelConfig(
  {
    model_type: 'qwen2',
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 200,
  },
  'tiny',
);

beforeAll(async () => {
  const src = join(tmp, 'source');
  const tensors: Record<string, HostTensor> = {};
  for (const spec of expectQwen2Tensors(config)) {
    tensors[spec.name] = hostTensor(
      'F32',
      spec.shape,
      new Float32Array(numel(spec.shape)).map((_, i) => i % 7),
    );
  }
  saveCheckpoint(src, config, tensors);
  repoFiles.push(
    { path: 'config.json', data: readFileSync(join(src, 'config.json')), lfs: false },
    { path: 'model.safetensors', data: readFileSync(join(src, 'model.safetensors')), lfs: true },
    { path: 'tokenizer_config.json', data: Buffer.from('{"chat_template": "{{ messages }}"}'), lfs: false },
    { path: 'README.md', data: Buffer.from('# tiny'), lfs: false },
    { path: 'pytorch_model.bin', data: Buffer.alloc(1000), lfs: true },
    { path: 'onnx/model.onnx', data: Buffer.alloc(10), lfs: true },
  );
  server = createServer(handle);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.close();
  rmSync(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  requests.length = 0;
  dropAfter = undefined;
});

let cacheCount = 0;
/** A fresh cache dir and an environment pointing at the fake Hub; output captured. */
function setup(extraEnv: Record<string, string> = {}): {
  opts: ResolveModelOptions;
  cache: string;
  output: () => string;
} {
  const cache = join(tmp, `cache${cacheCount++}`);
  let out = '';
  const stream = { isTTY: false, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream;
  return {
    cache,
    output: () => out,
    opts: { stream, env: { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache, HF_HOME: join(tmp, 'nohome'), ...extraEnv } },
  };
}

describe('resolveModel', () => {
  it('returns a local directory as is and rejects what is neither a directory nor a repo id', async () => {
    expect((await resolveModel(tmp)).dir).toBe(tmp);
    await expect(resolveModel(join(tmp, 'missing', 'dir'))).rejects.toThrow(/is neither a directory nor a Hub repo id/);
  });

  it('downloads only checkpoint files into the Hugging Face cache layout, once', async () => {
    const { opts, cache } = setup();
    const got = await resolveModel('acme/tiny', opts);
    const repoDir = join(cache, 'models--acme--tiny');
    expect(got).toMatchObject({ dir: join(repoDir, 'snapshots', COMMIT), repoId: 'acme/tiny', commit: COMMIT });
    expect(readFileSync(join(repoDir, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    expect(readdirSync(got.dir).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer_config.json']);
    const weights = join(got.dir, 'model.safetensors');
    expect(lstatSync(weights).isSymbolicLink()).toBe(true);
    const model = repoFiles[1].data;
    expect(readlinkSync(weights)).toBe(join('..', '..', 'blobs', sha256(model)));
    expect(existsSync(join(repoDir, 'blobs', gitOid(repoFiles[0].data)))).toBe(true);
    expect(requests.some((r) => /README|pytorch_model|onnx/.test(r.url))).toBe(false);
    expect(got.downloadedBytes).toBe(repoFiles.slice(0, 3).reduce((s, f) => s + f.data.length, 0));
    // The snapshot is a loadable checkpoint.
    expect(loadModelConfig(got.dir)).toEqual(config);
    openCheckpoint(got.dir).validate(config);

    requests.length = 0;
    const again = await resolveModel('acme/tiny', opts);
    expect(again).toEqual({ ...got, downloadedBytes: 0 });
    expect(requests.filter((r) => r.url.includes('/resolve/'))).toEqual([]);
  });

  it('fetches only tokenizer and config files when the weights are not needed', async () => {
    const { opts } = setup();
    const got = await resolveModel('acme/tiny', { ...opts, skipWeights: true });
    expect(readdirSync(got.dir).sort()).toEqual(['config.json', 'tokenizer_config.json']);
    expect(requests.some((r) => r.url.endsWith('.safetensors'))).toBe(false);
  });

  it('resumes an interrupted download with a Range request', async () => {
    const { opts, cache } = setup();
    dropAfter = 50_000;
    await expect(resolveModel('acme/tiny', opts)).rejects.toThrow(
      /download of model\.safetensors of acme\/tiny@main was interrupted after 50000 of \d+ bytes .*run again to resume/,
    );
    const model = repoFiles[1].data;
    const partial = join(cache, 'models--acme--tiny', 'blobs', sha256(model) + '.incomplete');
    expect(statSync(partial).size).toBe(50_000);
    requests.length = 0;
    const got = await resolveModel('acme/tiny', opts);
    expect(requests.find((r) => r.url.endsWith('/model.safetensors'))?.range).toBe('bytes=50000-');
    expect(readFileSync(join(got.dir, 'model.safetensors')).equals(model)).toBe(true);
    expect(existsSync(partial)).toBe(false);
    // config.json came before the interruption; the rest of the weights and the tokenizer config now.
    expect(got.downloadedBytes).toBe(model.length - 50_000 + repoFiles[2].data.length);
  });

  it('sends HF_TOKEN as a Bearer token and never prints it', async () => {
    const anon = setup();
    await expect(resolveModel('acme/private', anon.opts)).rejects.toThrow(
      /cannot access acme\/private@main .*HTTP 401.*set HF_TOKEN/,
    );

    const wrong = setup({ HF_TOKEN: 'hf_wrong_0000' });
    const err = await resolveModel('acme/private', wrong.opts).catch((e: Error) => e);
    expect(String(err)).toMatch(/the token in HF_TOKEN was refused/);
    expect(String(err)).not.toContain('hf_wrong_0000');

    const ok = setup({ HF_TOKEN: TOKEN });
    requests.length = 0;
    const got = await resolveModel('acme/private', ok.opts);
    expect(existsSync(join(got.dir, 'model.safetensors'))).toBe(true);
    expect(requests.filter((r) => r.url.includes('acme/private')).every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(
      true,
    );
    expect(ok.output()).toMatch(/download acme\/private/);
    expect(ok.output()).not.toContain(TOKEN);
  });

  it('uses only the cache in offline mode', async () => {
    const { opts } = setup();
    await expect(resolveModel('acme/tiny', { ...opts, env: { ...opts.env, HF_HUB_OFFLINE: '1' } })).rejects.toThrow(
      /acme\/tiny@main is not in the Hugging Face cache .* and HF_HUB_OFFLINE is set/,
    );
    const online = await resolveModel('acme/tiny', opts);
    requests.length = 0;
    const offline = await resolveModel('acme/tiny', { ...opts, env: { ...opts.env, HF_HUB_OFFLINE: '1' } });
    expect(offline.dir).toBe(online.dir);
    expect(requests).toEqual([]);
  });

  it('explains unknown repos, unknown revisions and an unreachable endpoint', async () => {
    const { opts, output } = setup();
    await expect(resolveModel('acme/nope', opts)).rejects.toThrow(
      /cannot access acme\/nope@main on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401\)/,
    );
    await expect(resolveModel('acme/tiny@v9', opts)).rejects.toThrow(/revision not found: acme\/tiny@v9/);
    const closed = createServer();
    await new Promise<void>((done) => closed.listen(0, '127.0.0.1', done));
    const deadEndpoint = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((done) => closed.close(done));
    const dead = { ...opts, env: { ...opts.env, HF_ENDPOINT: deadEndpoint } };
    await expect(resolveModel('acme/tiny', dead)).rejects.toThrow(
      /cannot reach http:\/\/127\.0\.0\.1:\d+ to download acme\/tiny@main \(ECONNREFUSED\)/,
    );
    // With the model cached, a network failure falls back to the cache with a warning.
    const cached = await resolveModel('acme/tiny', opts);
    expect((await resolveModel('acme/tiny', dead)).dir).toBe(cached.dir);
    expect(output()).toMatch(/warning: cannot reach .*ECONNREFUSED.*using the cached snapshot/);
  });

  it('accepts a commit hash as revision', async () => {
    const { opts } = setup();
    const got = await resolveModel(`acme/tiny@${COMMIT}`, opts);
    expect(got.commit).toBe(COMMIT);
    expect(existsSync(join(got.dir, 'config.json'))).toBe(true);
  });
});
