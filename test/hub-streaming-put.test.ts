/** streamingPut reads its body only as fast as the server takes it, and answers like fetch. */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, openAsBlob, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { streamingPut } from '../src/hub/streamingPut.js';

const SIZE = 48 * 2 ** 20;
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-put-'));
let held: IncomingMessage | undefined;
const server = createServer((req, res) => {
  if (req.url === '/slow') {
    // Take nothing until told to: the client must stop reading its body.
    req.pause();
    held = req;
  }
  let n = 0;
  req.on('data', (c: Buffer) => (n += c.length));
  req.on('end', () => res.writeHead(201, { ETag: '"e1"', 'Content-Type': 'text/plain' }).end(`got ${n}`));
});
const ready = new Promise<string>((done) =>
  server.listen(0, '127.0.0.1', () => done(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
);
afterAll(() => server.close());

it('keeps at most a few MB in flight while the server does not read', async () => {
  const base = await ready;
  // A file-backed Blob, as uploads use (openAsBlob): it is read in small chunks on demand.
  const file = join(tmp, 'body.bin');
  writeFileSync(file, new Uint8Array(SIZE));
  let sent = 0;
  const answer = streamingPut(`${base}/slow`, await openAsBlob(file), new Headers({ 'X-A': '1' }), (n) => (sent += n));
  await new Promise((r) => setTimeout(r, 300));
  // Only what the socket buffers on both sides hold (a few MB) has been read from the file.
  expect(sent).toBeLessThan(24 * 2 ** 20);
  held!.resume();
  const res = await answer;
  expect(sent).toBe(SIZE);
  expect(res.status).toBe(201);
  expect(res.ok).toBe(true);
  expect(res.headers.get('etag')).toBe('"e1"');
  expect(await res.text()).toBe(`got ${SIZE}`);
});

it('rejects like fetch when nothing listens', async () => {
  const err = await streamingPut('http://127.0.0.1:1/x', new Blob(['abc']), new Headers(), () => {}).catch((e) => e);
  expect(err).toBeInstanceOf(TypeError);
  expect(err.message).toBe('fetch failed');
  expect((err.cause as { code?: string }).code).toBe('ECONNREFUSED');
});
