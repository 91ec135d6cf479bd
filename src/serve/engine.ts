/** What the HTTP routes need: the loaded model behind its scheduler, and the server's limits. */
import type { ChatTemplate, ChatMessage } from '../data/chatTemplate.js';
import type { Tokenizer } from '../data/tokenizer.js';
import type { QueryLimits, SqlDatabase } from './database.js';
import type { Qwen2Model } from '../model/qwen2.js';
import { Scheduler } from './scheduler.js';

/** How a SQL question becomes the adapter's prompt, and its answer a statement. */
export interface SqlPrompting {
  /** The chat messages (system, user) asking for SQL on `db`, as the adapter was trained; `evidence`: BIRD's hint. */
  messages(db: SqlDatabase, question: string, evidence?: string): Promise<ChatMessage[]>;
  /** The statement in the model's answer. */
  extractSql(answer: string): string;
}

export interface ServeEngine {
  /** The name /v1/models lists and answers carry. */
  modelId: string;
  /** Unix seconds the model was loaded. */
  created: number;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  scheduler: Scheduler;
  /** Ids that end an answer (left out of its text). */
  stopIds: ReadonlySet<number>;
  /** Prompt + max_tokens of one request at most. */
  contextTokens: number;
  sql: SqlPrompting;
}

export interface ServeLimits {
  /** Request bodies larger than this are refused (413). */
  maxBodyBytes: number;
  /** The largest max_tokens a request may ask for. */
  maxTokens: number;
  /** max_tokens when a request gives none. */
  defaultMaxTokens: number;
  /** Characters of one message or prompt at most. */
  maxPromptChars: number;
  /** Tokens of SQL /v1/sql generates at most. */
  sqlMaxTokens: number;
  /** Limits of each /v1/sql query. */
  query: QueryLimits;
  /** SIGTERM waits this long for running requests before cancelling them. */
  shutdownMs: number;
}

export const DEFAULT_SERVE_LIMITS: Omit<ServeLimits, 'query'> = {
  maxBodyBytes: 1 << 20,
  maxTokens: 1024,
  defaultMaxTokens: 256,
  maxPromptChars: 100_000,
  sqlMaxTokens: 256,
  shutdownMs: 30_000,
};

export interface EngineParts {
  modelId: string;
  model: Qwen2Model;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  stopIds: readonly number[];
  padId: number;
  sql: SqlPrompting;
  /** Rows decoded together. */
  maxBatch: number;
  /** Prompt + answer tokens of one request at most (a KV cache row). */
  contextTokens: number;
  /** Requests waiting for a row at most (more get 503). */
  maxQueue: number;
}

/** The model behind a continuous-batching scheduler, ready for the routes. */
export function createServeEngine(p: EngineParts): ServeEngine {
  const scheduler = new Scheduler(p.model, {
    maxBatch: p.maxBatch,
    capacity: p.contextTokens,
    maxQueue: p.maxQueue,
    stopIds: p.stopIds,
    padId: p.padId,
  });
  return {
    modelId: p.modelId,
    created: Math.floor(Date.now() / 1000),
    tokenizer: p.tokenizer,
    template: p.template,
    scheduler,
    stopIds: new Set(p.stopIds),
    contextTokens: p.contextTokens,
    sql: p.sql,
  };
}
