/**
 * OpenAI-compatible routes: GET /v1/models, POST /v1/chat/completions and POST /v1/completions,
 * with OpenAI's request fields (messages or prompt, max_tokens / max_completion_tokens,
 * temperature, top_p, stop, seed, n = 1, stream, stream_options.include_usage) and answer
 * shapes; `stream: true` sends server-sent events of `chat.completion.chunk` (or
 * `text_completion`) objects ending with `data: [DONE]`.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChatMessage } from '../data/chatTemplate.js';
import { field, HttpError, sendJson } from './http.js';
import type { ServeEngine, ServeLimits } from './engine.js';
import { generateText, type TextRequest, type TextResult } from './textGeneration.js';

export function listModels(engine: ServeEngine): unknown {
  return {
    object: 'list',
    data: [{ id: engine.modelId, object: 'model', created: engine.created, owned_by: 'sqlora' }],
  };
}

interface Common {
  /** Asked for; when absent, the server's default within what the context leaves. */
  maxTokens: number | undefined;
  temperature: number;
  topP: number;
  seed: number | undefined;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

function commonParams(body: Record<string, unknown>, limits: ServeLimits): Common {
  const n = field.integer(body, 'n', 1, 1, 1);
  if (n !== 1) throw new HttpError(400, '"n" must be 1');
  const maxTokens =
    field.integer(body, 'max_completion_tokens', undefined, 1, limits.maxTokens) ??
    field.integer(body, 'max_tokens', undefined, 1, limits.maxTokens);
  const stopField = body.stop;
  let stop: string[] = [];
  if (typeof stopField === 'string') stop = [stopField];
  else if (Array.isArray(stopField) && stopField.length <= 4 && stopField.every((s) => typeof s === 'string'))
    stop = stopField as string[];
  else if (stopField !== undefined && stopField !== null)
    throw new HttpError(400, '"stop" must be a string or an array of up to 4 strings');
  if (stop.some((s) => s.length > 256)) throw new HttpError(400, 'a stop string is longer than 256 characters');
  const options = body.stream_options;
  return {
    maxTokens,
    temperature: field.number(body, 'temperature', 1, 0, 2),
    topP: field.number(body, 'top_p', 1, Number.MIN_VALUE, 1),
    seed: field.integer(body, 'seed', undefined, -(2 ** 53 - 1), 2 ** 53 - 1),
    stop,
    stream: field.boolean(body, 'stream'),
    includeUsage:
      options !== null && typeof options === 'object' && (options as Record<string, unknown>).include_usage === true,
  };
}

function messagesOf(body: Record<string, unknown>, limits: ServeLimits): ChatMessage[] {
  const raw = body.messages;
  if (!Array.isArray(raw) || raw.length === 0) throw new HttpError(400, '"messages" must be a non-empty array');
  return raw.map((m: unknown, i): ChatMessage => {
    const msg = m as Record<string, unknown> | null;
    const role = msg?.role;
    if (typeof role !== 'string' || !['system', 'user', 'assistant', 'developer'].includes(role))
      throw new HttpError(400, `messages[${i}].role must be system, user or assistant`);
    let content = msg?.content;
    // Content parts: only text ones.
    if (Array.isArray(content)) {
      if (!content.every((p) => (p as Record<string, unknown>)?.type === 'text'))
        throw new HttpError(400, `messages[${i}].content: only text parts are supported`);
      content = content.map((p) => String((p as Record<string, unknown>).text ?? '')).join('');
    }
    if (typeof content !== 'string') throw new HttpError(400, `messages[${i}].content must be a string`);
    if (content.length > limits.maxPromptChars) throw new HttpError(400, `messages[${i}].content is too long`);
    return { role: role === 'developer' ? 'system' : role, content };
  });
}

/** Aborts when the client goes away before the answer is complete. */
function disconnectSignal(res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}

function usage(r: TextResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
  };
}

function finishReason(r: TextResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

type Kind = 'chat' | 'text';

async function complete(
  engine: ServeEngine,
  kind: Kind,
  promptIds: number[],
  p: Common,
  limits: ServeLimits,
  res: ServerResponse,
): Promise<void> {
  const maxTokens = p.maxTokens ?? Math.min(limits.defaultMaxTokens, engine.contextTokens - promptIds.length);
  if (maxTokens < 1 || promptIds.length + maxTokens > engine.contextTokens)
    throw new HttpError(
      400,
      `the prompt (${promptIds.length} tokens) plus max_tokens (${maxTokens}) exceed the context of ${engine.contextTokens} tokens`,
      'invalid_request_error',
      'context_length_exceeded',
    );
  const id = (kind === 'chat' ? 'chatcmpl-' : 'cmpl-') + randomBytes(12).toString('hex');
  const created = Math.floor(Date.now() / 1000);
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const req: TextRequest = {
    promptIds,
    maxTokens,
    sampling: { temperature: p.temperature, topP: p.topP },
    seed: p.seed,
    stop: p.stop,
    signal: disconnectSignal(res),
  };
  const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}): void => {
    const base = { id, object, created, model: engine.modelId };
    res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, ...choice }], ...extra })}\n\n`);
  };
  if (p.stream) {
    // The first event goes out only once the request has a place (a full queue still answers 503).
    let started = false;
    const start = (): void => {
      if (started) return;
      started = true;
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache',
        'X-Content-Type-Options': 'nosniff',
      });
      if (kind === 'chat') chunk({ delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
    };
    req.onText = (delta) => {
      start();
      chunk(
        kind === 'chat'
          ? { delta: { content: delta }, logprobs: null, finish_reason: null }
          : { text: delta, logprobs: null, finish_reason: null },
      );
    };
    const pending = generateText(engine.scheduler, engine.tokenizer, engine.stopIds, req);
    start();
    const r = await pending;
    if (r.finishReason === 'cancelled') return void res.end();
    chunk(
      kind === 'chat'
        ? { delta: {}, logprobs: null, finish_reason: finishReason(r) }
        : { text: '', logprobs: null, finish_reason: finishReason(r) },
      p.includeUsage ? { usage: null } : {},
    );
    if (p.includeUsage)
      res.write(
        `data: ${JSON.stringify({ id, object, created, model: engine.modelId, choices: [], usage: usage(r) })}\n\n`,
      );
    res.end('data: [DONE]\n\n');
    return;
  }
  const r = await generateText(engine.scheduler, engine.tokenizer, engine.stopIds, req);
  if (r.finishReason === 'cancelled') return void res.end();
  const choice =
    kind === 'chat'
      ? { index: 0, message: { role: 'assistant', content: r.text }, logprobs: null, finish_reason: finishReason(r) }
      : { index: 0, text: r.text, logprobs: null, finish_reason: finishReason(r) };
  sendJson(res, 200, {
    id,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created,
    model: engine.modelId,
    choices: [choice],
    usage: usage(r),
  });
}

export async function chatCompletions(
  engine: ServeEngine,
  limits: ServeLimits,
  body: Record<string, unknown>,
  _req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const messages = messagesOf(body, limits);
  const p = commonParams(body, limits);
  const text = engine.template.render(messages, { addGenerationPrompt: true });
  await complete(engine, 'chat', engine.tokenizer.encode(text), p, limits, res);
}

export async function completions(
  engine: ServeEngine,
  limits: ServeLimits,
  body: Record<string, unknown>,
  _req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1) prompt = prompt[0];
  if (typeof prompt !== 'string' || prompt.length === 0)
    throw new HttpError(400, '"prompt" must be a non-empty string (one prompt per request)');
  if (prompt.length > limits.maxPromptChars) throw new HttpError(400, '"prompt" is too long');
  const p = commonParams(body, limits);
  await complete(engine, 'text', engine.tokenizer.encode(prompt), p, limits, res);
}
