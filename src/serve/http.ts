/**
 * HTTP plumbing the routes share: errors in OpenAI's shape (`{error: {message, type, code}}`),
 * bodies read with a size cap (a declared length over the cap is refused before reading), and
 * JSON answers. Messages sent to clients are written here or by the routes, never taken from an
 * exception (which could name a file or carry a stack).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An answer other than 2xx, with the message the client sees. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export function errorBody(err: HttpError): { error: { message: string; type: string; code: string | null } } {
  return { error: { message: err.message, type: err.type, code: err.code } };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError, headers: Record<string, string> = {}): void {
  sendJson(res, err.status, errorBody(err), headers);
}

/** The request's body as text, at most maxBytes (413 beyond). */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > maxBytes)
    throw new HttpError(413, `request body over ${maxBytes} bytes`, 'invalid_request_error', 'body_too_large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes)
      throw new HttpError(413, `request body over ${maxBytes} bytes`, 'invalid_request_error', 'body_too_large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The body parsed as a JSON object (400 otherwise). Only `Content-Type: application/json` is
 * read (415 otherwise): a web page of another origin can send text/plain or form bodies without
 * asking first, but not JSON, so no other site can make a visitor's browser use the API.
 */
export async function readJsonObject(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/json\s*(;|$)/i.test(type)) throw new HttpError(415, 'send the body as application/json');
  const text = await readBody(req, maxBytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'the body is not valid JSON', 'invalid_request_error', 'invalid_json');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new HttpError(400, 'the body must be a JSON object', 'invalid_request_error', 'invalid_json');
  return value as Record<string, unknown>;
}

/** Field readers that answer 400 naming the field. */
export const field = {
  string(body: Record<string, unknown>, name: string, maxLength: number): string {
    const v = body[name];
    if (typeof v !== 'string')
      throw new HttpError(400, `"${name}" must be a string`, 'invalid_request_error', 'invalid_field');
    if (v.length > maxLength) throw new HttpError(400, `"${name}" is longer than ${maxLength} characters`);
    return v;
  },
  number(body: Record<string, unknown>, name: string, dflt: number, min: number, max: number): number {
    const v = body[name];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max)
      throw new HttpError(
        400,
        `"${name}" must be a number in [${min}, ${max}]`,
        'invalid_request_error',
        'invalid_field',
      );
    return v;
  },
  integer(
    body: Record<string, unknown>,
    name: string,
    dflt: number | undefined,
    min: number,
    max: number,
  ): number | undefined {
    const v = body[name];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new HttpError(
        400,
        `"${name}" must be an integer in [${min}, ${max}]`,
        'invalid_request_error',
        'invalid_field',
      );
    return v;
  },
  boolean(body: Record<string, unknown>, name: string): boolean {
    const v = body[name];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean')
      throw new HttpError(400, `"${name}" must be true or false`, 'invalid_request_error', 'invalid_field');
    return v;
  },
};
