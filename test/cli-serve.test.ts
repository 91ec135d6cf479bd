/**
 * `sqlora serve` as a process: bad input fails with one line and a non-zero exit before the
 * model loads (a database that cannot be opened, a bad name or URL, an adapter without a base,
 * a port in use), and SIGTERM stops taking requests, lets a running one finish and exits 0.
 */
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { initLora, type LoraConfig } from '../src/lora/lora.js';
import { writePeftAdapter } from '../src/lora/peft.js';
import { loadModelConfig } from '../src/model/config.js';
import { sqlora } from './helpers/cli.js';
import { writeTinyChatModel } from './helpers/tiny-chat-model.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-cli-serve-'));
const modelDir = join(tmp, 'model');
const orphan = join(tmp, 'orphan-adapter');
const dbPath = join(tmp, 'concert_singer.sqlite');

beforeAll(() => {
  writeTinyChatModel(modelDir, 2);
  const lora: LoraConfig = { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false };
  writePeftAdapter(orphan, initLora(loadModelConfig(modelDir), lora, 1), { baseModelNameOrPath: null });
  copyFileSync('test/fixtures/spider/database/concert_singer/concert_singer.sqlite', dbPath);
  writeFileSync(join(tmp, 'not-a-db.sqlite'), 'hello, I am text');
});

/** The one error line of a run that must fail before loading the model. */
async function failsEarly(args: string[]): Promise<string> {
  const r = await sqlora('serve', args);
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.stderr).not.toContain('model:');
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0];
}

describe('sqlora serve', () => {
  it('fails with one line before loading the model on bad input', async () => {
    const base = ['--model', modelDir, '--port', '0'];
    expect(await failsEarly([...base, '--db', `x=${join(tmp, 'missing.sqlite')}`])).toMatch(
      /^error: .*missing\.sqlite/,
    );
    expect(await failsEarly([...base, '--db', `x=${join(tmp, 'not-a-db.sqlite')}`])).toMatch(/^error: .*not-a-db/);
    expect(await failsEarly([...base, '--db', `bad name!=${dbPath}`])).toMatch(/^error: --db .*the name/);
    expect(await failsEarly([...base, '--db', `a=${dbPath}`, '--db', `a=${dbPath}`])).toMatch(/given twice/);
    expect(await failsEarly([...base, '--db', 'crm=postgres://me@[::1/crm'])).toMatch(/^error: /);
    expect(await failsEarly([...base, '--cors', 'not a url'])).toMatch(/^error: --cors/);
    expect(await failsEarly([...base, '--host', 'bad host!'])).toMatch(/^error: --host/);
    expect(await failsEarly(['--adapter', orphan, '--port', '0'])).toMatch(
      /^error: --model is required: .*names no base model/,
    );
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      expect(await failsEarly(['--model', modelDir, '--port', String(port)])).toMatch(/already in use/);
    } finally {
      busy.close();
    }
  });

  it('finishes a running request on SIGTERM, refuses new ones, and exits 0', async () => {
    let child: ChildProcess | null = null;
    let stderr = '';
    const run = sqlora('serve', ['--model', modelDir, '--port', '0', '--db', `concert=${dbPath}`, '--max-batch', '2'], {
      onSpawn: (c) => {
        child = c;
        c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      },
    });
    const t0 = Date.now();
    while (!/serving .* on (http:\S+)/.test(stderr) && Date.now() - t0 < 30_000)
      await new Promise((r) => setTimeout(r, 20));
    const url = /serving .* on (http:\S+)/.exec(stderr)![1];
    const dbs = (await (await fetch(`${url}/v1/databases`)).json()) as { data: { name: string }[] };
    expect(dbs.data[0].name).toBe('concert');
    // The served name is the folder's, not its path.
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['model']);
    // A long streamed answer is under way when SIGTERM comes.
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'SELECT', max_tokens: 300, temperature: 0.8, seed: 1, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    child!.kill('SIGTERM');
    while (!stderr.includes('SIGTERM')) await new Promise((r) => setTimeout(r, 5));
    const refused = await fetch(`${url}/health`).then(
      (r) => r.status,
      () => 'closed',
    );
    expect([503, 'closed']).toContain(refused);
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(rest).toContain('"finish_reason":');
    // Text kept coming after SIGTERM: the request was still running.
    expect(rest.split('data: {').length - 1).toBeGreaterThan(5);
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('stopped');
  });
});
