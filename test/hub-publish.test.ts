/** sqlora publish against a local fake Hub: repo creation, one commit, LFS, reruns, token errors, --with, the CLI. */
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportGguf, exportMerged, GgufFile } from '../src/export/index.js';
import { parsePublishExtras } from '../src/publish/publishExports.js';
import { buildPublishFolder } from '../src/publish/publishFolder.js';
import { uploadToHub, type UploadOptions } from '../src/hub/upload.js';
import { sqlora } from './helpers/cli.js';
import { buildExportFixture } from './helpers/export-model.js';
import { FakeHub, sha256Hex } from './helpers/fake-hub.js';
import { makeRun, publishOptions, PUBLISH, REPORT } from './helpers/publish-run.js';

const TOKEN = 'hf_writeToken_8c1f2e7d9a';
const READ_TOKEN = 'hf_readToken_51b0c9';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-publish-'));
const hub = new FakeHub();

function captured(): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const stream = { isTTY: false, write: (s: string) => ((out += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => out };
}

function uploadOpts(repo: string, stream: NodeJS.WriteStream, token = TOKEN): UploadOptions {
  return {
    repo,
    token: { value: token, source: 'the HF_TOKEN environment variable' },
    endpoint: hub.endpoint,
    commitTitle: 'Upload sqlora adapter and model card',
    stream,
  };
}

beforeAll(async () => {
  await hub.start();
  hub.tokens.set(TOKEN, 'write');
  hub.tokens.set(READ_TOKEN, 'read');
});
afterAll(() => hub.stop());

describe('upload to the Hub', () => {
  it('creates the repo and commits every file once, the weights through LFS; a rerun commits nothing', async () => {
    const run = makeRun(tmp);
    const folder = await buildPublishFolder(publishOptions(run));
    const { stream, text } = captured();
    hub.requests.length = 0;
    const r = await uploadToHub(folder.files, { ...uploadOpts('acme/qwen-sql', stream), private: true });
    expect(r.created).toBe(true);
    expect(hub.repos.get('acme/qwen-sql')!.private).toBe(true);
    const head = hub.head('acme/qwen-sql');
    expect(r.commit).toEqual({ oid: head.oid, url: `${hub.endpoint}/acme/qwen-sql/commit/${head.oid}` });
    expect(head.title).toBe('Upload sqlora adapter and model card');
    expect(head.changes).toEqual([
      { path: 'adapter_config.json', kind: 'file' },
      { path: 'adapter_model.safetensors', kind: 'lfsFile' },
      { path: 'training_summary.json', kind: 'file' },
      { path: 'metrics.jsonl', kind: 'file' },
      { path: 'loss.svg', kind: 'file' },
      { path: 'README.md', kind: 'file' },
    ]);
    for (const f of folder.files) expect(head.files.get(f.path)!.data).toEqual(readFileSync(f.file));
    const weights = readFileSync(join(run, 'adapter', 'adapter_model.safetensors'));
    const oid = sha256Hex(weights);
    // The LFS protocol in order: preupload, batch, the bytes, verify, then the commit.
    expect(hub.requests.map((q) => `${q.method} ${q.path}`)).toEqual([
      'GET /api/models/acme/qwen-sql/revision/main',
      'POST /api/repos/create',
      'POST /api/models/acme/qwen-sql/preupload/main',
      'POST /acme/qwen-sql.git/info/lfs/objects/batch',
      `PUT /_lfs/${oid}`,
      `POST /_lfs/${oid}/verify`,
      'POST /api/models/acme/qwen-sql/commit/main',
    ]);
    expect(hub.lfsObjects.get(oid)).toEqual(weights);
    // The token goes to the Hub API only, never to the storage URLs.
    for (const q of hub.requests)
      expect(q.auth).toBe(
        q.path.startsWith('/_lfs/') ? (q.path.endsWith('/verify') ? 'Basic dmVyaWZ5' : undefined) : `Bearer ${TOKEN}`,
      );
    expect(text()).toMatch(/^upload acme\/qwen-sql \[#{20}\] 35\/35 [\d.]+ kB\/s ETA \d\d:\d\d {2}phase committing$/m);
    expect(text()).not.toContain(TOKEN);

    hub.requests.length = 0;
    const again = await uploadToHub(folder.files, uploadOpts('acme/qwen-sql', stream));
    expect(again).toMatchObject({ created: false, commit: null, uploaded: [] });
    expect(again.unchanged).toEqual(folder.files.map((f) => f.path));
    expect(hub.repos.get('acme/qwen-sql')!.commits.length).toBe(2);
    expect(hub.requests.map((q) => `${q.method} ${q.path}`)).toEqual([
      'GET /api/models/acme/qwen-sql/revision/main',
      `GET /api/models/acme/qwen-sql/tree/${head.oid}`,
    ]);
  });

  it('uploads only the file that changed, on top of the commit it compared with', async () => {
    const run = makeRun(tmp);
    const repo = 'acme/changed-one';
    const first = await buildPublishFolder(publishOptions(run, { repo }));
    const { stream } = captured();
    await uploadToHub(first.files, uploadOpts(repo, stream));
    const before = hub.head(repo);
    // New weights, same config: only adapter_model.safetensors differs.
    const weightsPath = join(run, 'adapter', 'adapter_model.safetensors');
    const weights = readFileSync(weightsPath);
    weights[weights.length - 1] ^= 0x01;
    writeFileSync(weightsPath, weights);
    const second = await buildPublishFolder(publishOptions(run, { repo }));
    hub.requests.length = 0;
    const r = await uploadToHub(second.files, uploadOpts(repo, stream));
    expect(r.uploaded).toEqual(['adapter_model.safetensors']);
    const head = hub.head(repo);
    expect(head.parent).toBe(before.oid);
    expect(head.changes).toEqual([{ path: 'adapter_model.safetensors', kind: 'lfsFile' }]);
    expect(head.files.get('adapter_model.safetensors')!.data).toEqual(weights);
    expect(head.files.get('README.md')).toEqual(before.files.get('README.md'));
    expect(hub.calls(/^\/_lfs\//)).toEqual([
      `PUT /_lfs/${sha256Hex(weights)}`,
      `POST /_lfs/${sha256Hex(weights)}/verify`,
    ]);
  });

  it('sends a file the Hub wants in parts as parts, then completes and verifies it', async () => {
    const run = makeRun(tmp);
    const repo = 'acme/multipart';
    const folder = await buildPublishFolder(publishOptions(run, { repo }));
    const weights = readFileSync(join(run, 'adapter', 'adapter_model.safetensors'));
    const oid = sha256Hex(weights);
    hub.lfsObjects.delete(oid);
    hub.verified.delete(oid);
    hub.multipartChunk = 8000;
    hub.requests.length = 0;
    try {
      const { stream } = captured();
      await uploadToHub(folder.files, uploadOpts(repo, stream));
    } finally {
      hub.multipartChunk = 0;
    }
    expect(weights.length).toBe(21456);
    expect(hub.calls(/^\/_lfs\//)).toEqual([
      `PUT /_lfs/${oid}/part/1`,
      `PUT /_lfs/${oid}/part/2`,
      `PUT /_lfs/${oid}/part/3`,
      `POST /_lfs/${oid}`,
      `POST /_lfs/${oid}/verify`,
    ]);
    expect(hub.head(repo).files.get('adapter_model.safetensors')!.data).toEqual(weights);
  });

  it('says which token the Hub refused, never its value', async () => {
    const run = makeRun(tmp);
    const folder = await buildPublishFolder(publishOptions(run, { repo: 'acme/refused' }));
    const { stream, text } = captured();
    const bad = 'hf_notAValidToken_123';
    await expect(uploadToHub(folder.files, uploadOpts('acme/refused', stream, bad))).rejects.toThrow(
      `the Hub at ${hub.endpoint} refused the token from the HF_TOKEN environment variable (HTTP 401 while reading acme/refused): it is invalid or expired`,
    );
    await expect(uploadToHub(folder.files, uploadOpts('acme/refused', stream, READ_TOKEN))).rejects.toThrow(
      'the token from the HF_TOKEN environment variable may not write to acme/refused (HTTP 403 while creating acme/refused): use a token with write access to the acme namespace',
    );
    expect(text()).toBe('');
    expect(hub.repos.has('acme/refused')).toBe(false);
  });
});

describe('publish --with merged,gguf', () => {
  it('exports into the folder as sqlora export does, uploads it through LFS and shows how to run it', async () => {
    const fx = buildExportFixture({ hiddenSize: 128 });
    const run = join(tmp, 'run-with');
    cpSync(join(REPORT, 'run'), run, { recursive: true });
    cpSync(fx.adapterDir, join(run, 'adapter'), { recursive: true });
    const repo = 'acme/with-gguf';
    const opts = publishOptions(run, {
      repo,
      exports: { with: ['merged', 'gguf'], model: fx.baseDir, quant: 'q8_0', quiet: true },
    });
    const folder = await buildPublishFolder(opts);
    const out = join(run, 'publish');
    const paths = folder.files.map((f) => f.path);
    const merged = paths.filter((p) => p.startsWith('merged/'));
    expect(merged.slice(0, 2)).toEqual(['merged/config.json', 'merged/model.safetensors']);
    expect(paths).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'training_summary.json',
      'metrics.jsonl',
      'loss.svg',
      ...merged,
      'with-gguf-q8_0.gguf',
      'Modelfile',
      'README.md',
    ]);
    // The same bytes as the exporters write on their own (digests: deep-comparing megabytes is slow).
    const direct = join(tmp, 'direct');
    const m = await exportMerged({
      baseDir: fx.baseDir,
      adapterDir: join(run, 'adapter'),
      outDir: join(direct, 'merged'),
    });
    expect(merged).toEqual(m.files.map((f) => `merged/${f}`));
    for (const f of m.files)
      expect(sha256Hex(readFileSync(join(out, 'merged', f)))).toBe(sha256Hex(readFileSync(join(direct, 'merged', f))));
    const g = await exportGguf({
      baseDir: fx.baseDir,
      adapterDir: join(run, 'adapter'),
      outFile: join(direct, 'with-gguf-q8_0.gguf'),
      quant: 'q8_0',
      name: 'with-gguf',
      modelfile: false,
    });
    expect(sha256Hex(readFileSync(join(out, 'with-gguf-q8_0.gguf')))).toBe(sha256Hex(readFileSync(g.outFile)));
    const gguf = GgufFile.open(join(out, 'with-gguf-q8_0.gguf'));
    expect([gguf.get('general.architecture'), gguf.get('general.name'), gguf.get('general.file_type')]).toEqual([
      'qwen2',
      'with-gguf',
      7,
    ]);
    gguf.close();
    // The Modelfile's SYSTEM is the one the prompt records were made with.
    const record = JSON.parse(readFileSync(join(PUBLISH, 'data', 'eval.jsonl'), 'utf8'));
    const modelfile = readFileSync(join(out, 'Modelfile'), 'utf8');
    expect(modelfile.split('\n')[0]).toBe('FROM ./with-gguf-q8_0.gguf');
    expect(modelfile).toContain(`PARAMETER stop "<|im_end|>"\nSYSTEM """${record.messages[0].content}"""\n`);

    const card = readFileSync(join(out, 'README.md'), 'utf8');
    expect(card).toContain('- gguf\n- sqlora\nmodel-index:');
    expect(card).toContain(
      'model = AutoModelForCausalLM.from_pretrained("acme/with-gguf", subfolder="merged", device_map="auto")',
    );
    expect(card).toContain('llama-server -hf acme/with-gguf:Q8_0');
    expect(card).toContain(
      'huggingface-cli download acme/with-gguf with-gguf-q8_0.gguf Modelfile --local-dir with-gguf\nollama create with-gguf -f with-gguf/Modelfile\n',
    );
    expect(card).toContain("merged into the base model's original (unquantized) weights, quantized to Q8_0");

    const { stream } = captured();
    await uploadToHub(folder.files, uploadOpts(repo, stream));
    const head = hub.head(repo);
    expect(head.changes.filter((c) => c.kind === 'lfsFile').map((c) => c.path)).toEqual([
      'adapter_model.safetensors',
      'merged/model.safetensors',
      'with-gguf-q8_0.gguf',
    ]);
    expect(sha256Hex(head.files.get('with-gguf-q8_0.gguf')!.data)).toBe(sha256Hex(readFileSync(g.outFile)));
    // Exports are deterministic: publishing again re-exports the same bytes and commits nothing.
    const again = await uploadToHub((await buildPublishFolder(opts)).files, uploadOpts(repo, stream));
    expect(again.commit).toBeNull();
    expect(again.unchanged).toEqual(paths);
  });

  it('refuses an unknown --with entry and quantization before writing anything', async () => {
    const run = makeRun(tmp);
    expect(() => parsePublishExtras('merged,onnx')).toThrow('--with: "onnx" is not one of merged, gguf');
    expect(parsePublishExtras(' gguf, merged,gguf')).toEqual(['gguf', 'merged']);
    await expect(
      buildPublishFolder(publishOptions(run, { exports: { with: ['gguf'], quant: 'q3_k' as never } })),
    ).rejects.toThrow('--quant "q3_k" is not a GGUF quantization: use one of');
    expect(existsSync(join(run, 'publish'))).toBe(false);
  });
});

describe('sqlora publish', () => {
  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    HF_ENDPOINT: hub.endpoint,
    HF_HOME: join(tmp, 'no-hf-home'),
    HF_TOKEN: '',
    ...extra,
  });

  it('uploads to HF_ENDPOINT with HF_TOKEN, never printing it; a rerun says nothing changed', async () => {
    const run = makeRun(tmp);
    const args = [
      '--run',
      run,
      '--repo',
      'acme/cli-model',
      '--eval',
      join(REPORT, 'finetuned_results.json'),
      '--data',
      join(PUBLISH, 'data'),
    ];
    const r = await sqlora('publish', args, { env: env({ HF_TOKEN: TOKEN }) });
    expect(r.stderr).not.toContain(TOKEN);
    expect(r.stdout).not.toContain(TOKEN);
    expect(r.code).toBe(0);
    const head = hub.head('acme/cli-model');
    expect(r.stdout).toBe(
      [
        `wrote 6 files to ${join(run, 'publish')}`,
        `created repo ${hub.endpoint}/acme/cli-model`,
        `uploaded 6 of 6 files (adapter_config.json, adapter_model.safetensors, training_summary.json, metrics.jsonl, loss.svg, README.md) in commit ${head.oid}: ${hub.endpoint}/acme/cli-model/commit/${head.oid}`,
        '',
      ].join('\n'),
    );
    expect([...head.files.keys()].sort()).toEqual([
      '.gitattributes',
      'README.md',
      'adapter_config.json',
      'adapter_model.safetensors',
      'loss.svg',
      'metrics.jsonl',
      'training_summary.json',
    ]);
    const again = await sqlora('publish', args, { env: env({ HF_TOKEN: TOKEN }) });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(
      `wrote 6 files to ${join(run, 'publish')}\nnothing changed: ${hub.endpoint}/acme/cli-model already has these 6 files; no commit made\n`,
    );
  });

  it('--dry-run writes the folder (--with merged) and sends nothing; bad input is one line and a non-zero exit', async () => {
    const run = makeRun(tmp);
    const out = join(tmp, 'dry');
    hub.requests.length = 0;
    // The adapter names its base by a folder: the merge finds it there.
    const dry = await sqlora(
      'publish',
      ['--run', run, '--repo', 'acme/dry', '--with', 'merged', '--dry-run', '--out', out],
      {
        env: env(),
      },
    );
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(
      `wrote 9 files to ${out} (adapter_config.json, adapter_model.safetensors, training_summary.json, metrics.jsonl, loss.svg, merged/config.json, merged/model.safetensors, merged/generation_config.json, README.md); nothing uploaded (--dry-run)\n`,
    );
    expect(readdirSync(join(out, 'merged')).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
    ]);
    expect(hub.requests).toEqual([]);

    const flagToken = 'hf_flagTokenRefused_77';
    const refused = await sqlora('publish', ['--run', run, '--repo', 'acme/x', '--token', flagToken], { env: env() });
    expect(refused.code).toBe(1);
    expect(refused.stderr.split('\n').filter((l) => l.startsWith('error:'))).toEqual([
      `error: the Hub at ${hub.endpoint} refused the token from the --token flag (HTTP 401 while reading acme/x): it is invalid or expired; create a write token at https://huggingface.co/settings/tokens`,
    ]);
    expect(refused.stderr + refused.stdout).not.toContain(flagToken);

    const noToken = await sqlora('publish', ['--run', run, '--repo', 'acme/x'], { env: env() });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toBe(
      'error: uploading needs a Hugging Face token with write access: set HF_TOKEN (or pass --token), or use --dry-run to only write the folder\n',
    );
    const badRepo = await sqlora('publish', ['--run', run, '--repo', 'https://huggingface.co/acme/x', '--dry-run'], {
      env: env(),
    });
    expect(badRepo.code).toBe(1);
    expect(badRepo.stderr).toMatch(/^error: --repo "https:\/\/huggingface.co\/acme\/x" is not a Hub repo id[^\n]*\n$/);
  });
});
