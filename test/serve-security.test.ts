/**
 * Hostile and careless clients against `sqlora serve`'s server: huge bodies (declared and
 * chunked), bad JSON, missing or wrong keys, unknown databases and paths as names, path
 * traversal, CORS, an internal failure whose message names a file, 200 concurrent
 * connections overflowing the queue, and clients that disconnect mid-answer (their rows are
 * freed). After each, the server still answers.
 */
import { copyFileSync, mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../src/model/generate.js';
import type { SqlDatabase } from '../src/serve/database.js';
import { openDatabase } from '../src/serve/databases.js';
import { serveTinyModel, type ServedModel } from './helpers/serve-fixture.js';

const KEY = 'sk-test-0123456789';
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-serve-sec-'));
const dbPath = join(tmp, 'concert_singer.sqlite');
let db: SqlDatabase;
let s: ServedModel;
let cors: ServedModel;
const logged: string[] = [];

beforeAll(async () => {
  copyFileSync('test/fixtures/spider/database/concert_singer/concert_singer.sqlite', dbPath);
  db = await openDatabase('concert_singer', dbPath);
  s = await serveTinyModel({
    apiKey: KEY,
    maxBatch: 2,
    maxQueue: 4,
    limits: { maxBodyBytes: 16_384, maxTokens: 240 },
    databases: new Map([['concert_singer', db]]),
    sql: {
      messages: () => Promise.reject(new Error(`cannot read ${dbPath}: disk on fire`)),
      extractSql: (t) => t,
    },
    log: (line) => logged.push(line),
  });
  cors = await serveTinyModel({ cors: 'http://app.example' });
});
afterAll(async () => {
  await s.server.shutdown();
  await cors.server.shutdown();
  await db.close();
});

const auth = { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' };

async function call(path: string, init: RequestInit = {}, base = s.url) {
  const res = await fetch(base + path, init);
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  // The answers' JSON is read field by field as the assertions need.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { status: res.status, headers: res.headers, text, json: json as Record<string, any> };
}

const post = (path: string, body: unknown, headers: Record<string, string> = auth) =>
  call(path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

async function stillServing(): Promise<void> {
  const r = await call('/v1/models', { headers: auth });
  expect(r.status).toBe(200);
  expect(r.json.data[0].id).toBe('tiny-chat');
}

/** Sends a body of `size` bytes in chunks without a length; resolves with the status the server answered. */
function chunkedUpload(size: number): Promise<number> {
  const url = new URL(s.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: '/v1/chat/completions', method: 'POST', headers: auth },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', (err) => reject(err));
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

describe('serve under hostile requests', () => {
  it('refuses huge bodies, declared or streamed, and bad JSON', async () => {
    const huge = await post(
      '/v1/chat/completions',
      JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(5e6) }] }),
    );
    expect(huge.status).toBe(413);
    expect(huge.json.error.code).toBe('body_too_large');
    expect(await chunkedUpload(4 << 20)).toBe(413);
    for (const bad of ['{"messages": [', 'null', '[1,2]', '"text"', '\u0000\u0001']) {
      const r = await post('/v1/chat/completions', bad);
      expect(r.status, bad).toBe(400);
      expect(r.json.error.code).toBe('invalid_json');
    }
    await stillServing();
  });

  it('needs the API key on /v1 routes (not on the page or /health)', async () => {
    for (const headers of [
      {} as Record<string, string>,
      { Authorization: 'Bearer wrong' },
      { Authorization: KEY },
      { Authorization: `Basic ${KEY}` },
    ]) {
      const r = await call('/v1/models', { headers });
      expect(r.status).toBe(401);
      expect(r.json.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    }
    expect((await call(`/v1/models?api_key=${KEY}`)).status).toBe(401);
    const sql = await post(
      '/v1/sql',
      { db: 'concert_singer', question: 'how many singers?' },
      { 'Content-Type': 'application/json' },
    );
    expect(sql.status).toBe(401);
    expect((await call('/health')).status).toBe(200);
    expect((await call('/')).status).toBe(200);
  });

  it('reaches only the databases named on the command line; no path works as a name', async () => {
    for (const name of [
      'nope',
      dbPath,
      '../concert_singer',
      'concert_singer.sqlite',
      '__proto__',
      'constructor',
      '',
      'CONCERT_SINGER',
    ]) {
      const r = await post('/v1/sql', { db: name, question: 'how many singers?' });
      expect(r.status, name).toBe(404);
      expect(r.json.error.code).toBe('database_not_found');
      expect(r.text).not.toContain(tmp);
    }
    expect((await post('/v1/sql', { db: 42, question: 'x' })).status).toBe(400);
    const list = await call('/v1/databases', { headers: auth });
    expect(list.json.data.map((d: { name: string }) => d.name)).toEqual(['concert_singer']);
    expect(list.text).not.toContain(tmp);
  });

  it('answers only requests addressed to loopback (DNS rebinding) and only JSON bodies (cross-site forms)', async () => {
    const url = new URL(s.url);
    const withHost = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: url.hostname, port: url.port, path: '/v1/models', headers: { ...auth, Host: host } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await withHost(`evil.example:${url.port}`)).toBe(421);
    expect(await withHost('127.0.0.1.evil.example')).toBe(421);
    expect(await withHost(`localhost:${url.port}`)).toBe(200);
    expect(await withHost(`[::1]:${url.port}`)).toBe(200);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '']) {
      const r = await post('/v1/sql', JSON.stringify({ db: 'concert_singer', question: 'x' }), {
        Authorization: `Bearer ${KEY}`,
        'Content-Type': type,
      });
      expect(r.status, type).toBe(415);
    }
  });

  it('serves no files: traversal paths are 404', async () => {
    for (const path of [
      '/../../etc/passwd',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/v1/../../../etc/passwd',
      '/v1/%2e%2e/package.json',
      '//etc/passwd',
      '/package.json',
    ]) {
      const r = await call(path, { headers: auth });
      expect(r.status, path).toBe(404);
      expect(r.text).not.toContain('root:');
    }
  });

  it('answers an internal failure with "internal error", its details only in the log', async () => {
    const r = await post('/v1/sql', { db: 'concert_singer', question: 'how many singers?' });
    expect(r.status).toBe(500);
    expect(r.json.error.message).toBe('internal error');
    expect(r.text).not.toContain(tmp);
    expect(r.text).not.toContain('disk on fire');
    expect(logged.some((l) => l.includes('disk on fire'))).toBe(true);
  });

  it('sends CORS headers only for the configured origin', async () => {
    const plain = await call('/v1/models', { headers: { ...auth, Origin: 'http://evil.example' } });
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await call('/v1/chat/completions', { method: 'OPTIONS', headers: { Origin: 'http://evil.example' } });
    expect(pre.status).toBe(405);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const ok = await call(
      '/v1/chat/completions',
      { method: 'OPTIONS', headers: { Origin: 'http://app.example' } },
      cors.url,
    );
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://app.example');
    const models = await call('/v1/models', { headers: { Origin: 'http://app.example' } }, cors.url);
    expect(models.headers.get('access-control-allow-origin')).toBe('http://app.example');
    const other = await call('/v1/models', { headers: { Origin: 'http://evil.example' } }, cors.url);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('caps max_tokens and answers 503 (queue full) under 200 concurrent connections, then serves on', async () => {
    expect((await post('/v1/completions', { prompt: 'x', max_tokens: 241 })).status).toBe(400);
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        i % 2
          ? call('/health')
          : post('/v1/chat/completions', {
              messages: [{ role: 'user', content: `q${i}` }],
              max_tokens: 40,
              temperature: 0,
            }),
      ),
    );
    const chats = answers.filter((_, i) => i % 2 === 0);
    expect(answers.filter((_, i) => i % 2).every((a) => a.status === 200)).toBe(true);
    const busy = chats.filter((a) => a.status === 503);
    const served = chats.filter((a) => a.status === 200);
    expect(busy.length + served.length).toBe(100);
    expect(busy.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThanOrEqual(6);
    expect(busy[0].json.error.code).toBe('queue_full');
    expect(busy[0].headers.get('retry-after')).toBe('1');
    for (const a of served) expect(a.json.object).toBe('chat.completion');
    await stillServing();
  });

  it('frees the row of a client that disconnects, streaming or not', async () => {
    // A prompt whose greedy answer runs to the token limit (no stop id within 200 tokens).
    let prompt = '';
    for (const p of ['SELECT', 'count', 'FROM singer', 'WHERE', 'a b c', 'zzz']) {
      const [g] = await generate(s.model, [s.tokenizer.encode(p)], {
        maxNewTokens: 200,
        stopIds: s.stopIds,
        padId: 0,
        batchSize: 1,
      });
      if (g.finishReason === 'length') {
        prompt = p;
        break;
      }
    }
    expect(prompt).not.toBe('');
    for (const stream of [true, false]) {
      const before = s.engine.scheduler.stats.steps;
      const ac = new AbortController();
      const res = fetch(`${s.url}/v1/completions`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ prompt, max_tokens: 200, temperature: 0, stream }),
        signal: ac.signal,
      });
      if (stream) {
        const reader = (await res).body!.getReader();
        await reader.read();
      } else {
        while (s.engine.scheduler.stats.running === 0) await new Promise((r) => setTimeout(r, 2));
      }
      ac.abort();
      await res.catch(() => {});
      const t0 = Date.now();
      while (s.engine.scheduler.stats.running > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
      expect(s.engine.scheduler.stats.running).toBe(0);
      expect(s.engine.scheduler.stats.steps - before).toBeLessThan(150);
    }
    await stillServing();
  });
});
