/**
 * The HTTP server of `sqlora serve`: routes, API key, CORS, limits and graceful shutdown.
 *
 *   GET  /                      the web page (page.ts)
 *   GET  /health                {status, running, waiting}
 *   GET  /v1/models             OpenAI's model list
 *   POST /v1/chat/completions   OpenAI chat completions (stream or not)
 *   POST /v1/completions        OpenAI text completions (stream or not)
 *   GET  /v1/databases          the databases named on the command line, with their tables
 *   POST /v1/sql                {db, question} -> SQL and its rows
 *
 * With an API key, every /v1 route needs `Authorization: Bearer KEY` (the page and /health do
 * not: they reveal nothing). No CORS headers unless an origin is configured. Bound to loopback,
 * the server answers only requests addressed to a loopback name (the Host header), so a web
 * site that points its own name at 127.0.0.1 (DNS rebinding) cannot reach it from a browser. A failure the
 * routes did not describe answers 500 "internal error"; its details go to the log only.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { SqlDatabase } from './database.js';
import type { ServeEngine, ServeLimits } from './engine.js';
import { HttpError, readJsonObject, sendError, sendJson } from './http.js';
import { chatCompletions, completions, listModels } from './openaiRoutes.js';
import { PAGE_HTML } from './page.js';
import { QueueFullError, RequestError, SchedulerClosedError } from './scheduler.js';
import { listDatabases, sqlQuestion } from './sqlRoutes.js';
import { isLoopback } from './launch.js';

export interface ServeOptions {
  engine: ServeEngine;
  databases: ReadonlyMap<string, SqlDatabase>;
  limits: ServeLimits;
  apiKey?: string;
  /** The one origin allowed to call the API from a browser (`--cors`). */
  cors?: string;
  /** Where failures' details go (default: stderr). */
  log?: (line: string) => void;
}

export interface ServeServer {
  server: Server;
  /** Resolves with the bound address once listening; rejects (e.g. EADDRINUSE) otherwise. */
  listen(port: number, host: string): Promise<{ host: string; port: number; url: string }>;
  /** Stops accepting, lets running requests finish (cancelling them after limits.shutdownMs), closes. */
  shutdown(): Promise<void>;
}

const PAGE_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export function createServeServer(opts: ServeOptions): ServeServer {
  const { engine, databases, limits } = opts;
  const log = opts.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const keyDigest = opts.apiKey ? digest(opts.apiKey) : null;
  let closing = false;
  let loopbackOnly = false;

  /** Whether the Host header names this machine's loopback (any port). */
  const loopbackHost = (req: IncomingMessage): boolean => {
    try {
      const name = new URL(`http://${req.headers.host ?? ''}`).hostname.replace(/^\[(.*)\]$/, '$1');
      return isLoopback(name);
    } catch {
      return false;
    }
  };

  const corsHeaders = (req: IncomingMessage): Record<string, string> =>
    opts.cors && req.headers.origin === opts.cors ? { 'Access-Control-Allow-Origin': opts.cors, Vary: 'Origin' } : {};

  const authorized = (req: IncomingMessage): boolean => {
    if (!keyDigest) return true;
    const m = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''));
    return m !== null && timingSafeEqual(digest(m[1]), keyDigest);
  };

  const body = (req: IncomingMessage) => readJsonObject(req, limits.maxBodyBytes);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const method = req.method ?? 'GET';
    if (loopbackOnly && !loopbackHost(req))
      throw new HttpError(421, 'this server answers requests to localhost only', 'invalid_request_error', 'bad_host');
    if (method === 'OPTIONS') {
      const cors = corsHeaders(req);
      if (!cors['Access-Control-Allow-Origin']) throw new HttpError(405, 'method not allowed');
      res.writeHead(204, {
        ...cors,
        'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
        'Access-Control-Allow-Headers': 'Authorization, Content-Type',
        'Access-Control-Max-Age': '600',
      });
      return void res.end();
    }
    const want = (m: string): void => {
      if (method !== m) throw new HttpError(405, `${path} takes ${m}`);
    };
    if (path === '/' || path === '/index.html') {
      want('GET');
      res.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': PAGE_CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
      });
      return void res.end(PAGE_HTML);
    }
    if (path === '/health') {
      want('GET');
      const { running, waiting } = engine.scheduler.stats;
      return sendJson(res, closing ? 503 : 200, { status: closing ? 'shutting_down' : 'ok', running, waiting });
    }
    if (!path.startsWith('/v1/')) throw new HttpError(404, 'not found', 'not_found_error');
    if (!authorized(req))
      throw new HttpError(
        401,
        'a valid API key is required (Authorization: Bearer KEY)',
        'authentication_error',
        'invalid_api_key',
      );
    if (closing) throw new HttpError(503, 'the server is shutting down', 'server_error', 'shutting_down');
    switch (path) {
      case '/v1/models':
        want('GET');
        return sendJson(res, 200, listModels(engine), corsHeaders(req));
      case '/v1/databases':
        want('GET');
        return sendJson(res, 200, await listDatabases(databases), corsHeaders(req));
      case '/v1/chat/completions':
        want('POST');
        return chatCompletions(engine, limits, await body(req), req, withCors(res, corsHeaders(req)));
      case '/v1/completions':
        want('POST');
        return completions(engine, limits, await body(req), req, withCors(res, corsHeaders(req)));
      case '/v1/sql':
        want('POST');
        return sqlQuestion(engine, databases, limits, await body(req), withCors(res, corsHeaders(req)));
      default:
        throw new HttpError(404, 'not found', 'not_found_error');
    }
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      const headers = corsHeaders(req);
      let e: HttpError;
      if (err instanceof HttpError) e = err;
      else if (err instanceof QueueFullError) {
        e = new HttpError(
          503,
          'the server is busy: its request queue is full, retry later',
          'server_error',
          'queue_full',
        );
        headers['Retry-After'] = '1';
      } else if (err instanceof SchedulerClosedError)
        e = new HttpError(503, 'the server is shutting down', 'server_error', 'shutting_down');
      else if (err instanceof RequestError) e = new HttpError(400, err.message);
      else {
        log(`serve: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        e = new HttpError(500, 'internal error');
      }
      // A body too large is not read on: the connection closes after the answer.
      if (e.status === 413) headers.Connection = 'close';
      if (res.headersSent) res.end();
      else sendError(res, e, headers);
      if (e.status === 413) res.on('finish', () => req.destroy());
    });
  });
  server.headersTimeout = 15_000;
  server.requestTimeout = 60_000;
  server.maxConnections = 1024;

  return {
    server,
    listen(port, host) {
      loopbackOnly = isLoopback(host);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const addr = server.address();
          const bound = typeof addr === 'object' && addr ? addr.port : port;
          const shown = host.includes(':') ? `[${host}]` : host;
          resolve({ host, port: bound, url: `http://${shown}:${bound}` });
        });
      });
    },
    async shutdown() {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await engine.scheduler.drain(limits.shutdownMs);
      // Answers of cancelled requests are written by now; give them a moment to flush.
      await new Promise((r) => setTimeout(r, 50));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The response with CORS headers added to whatever the route writes. */
function withCors(res: ServerResponse, headers: Record<string, string>): ServerResponse {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  return res;
}
