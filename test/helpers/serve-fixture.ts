/**
 * A served model for the serve tests, on the CPU behind the continuous-batching scheduler, with
 * the HTTP server on a free loopback port: the tiny chat model of tiny-chat-model.ts, or with
 * `sqlToy` the toy model taught SQL questions (sql-toy-model.ts) with its adapter attached.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { ChatTemplate } from '../../src/data/chatTemplate.js';
import { Tokenizer } from '../../src/data/tokenizer.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import type { SqlDatabase } from '../../src/serve/database.js';
import {
  createServeEngine,
  DEFAULT_SERVE_LIMITS,
  type ServeEngine,
  type ServeLimits,
  type SqlPrompting,
} from '../../src/serve/engine.js';
import { DEFAULT_LIMITS } from '../../src/serve/database.js';
import { createServeServer, type ServeServer } from '../../src/serve/server.js';
import { readPromptSettings } from '../../src/data/promptSettings.js';
import { LoraAdapter } from '../../src/lora/lora.js';
import { adapterPrompting } from '../../src/serve/sqlPrompting.js';
import { readPeftAdapter } from '../../src/lora/peft.js';
import { buildSqlToyModel, SQL_ADAPTER_DIR } from './sql-toy-model.js';
import { writeTinyChatModel } from './tiny-chat-model.js';

export interface ServedModel {
  dir: string;
  model: Qwen2Model;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  engine: ServeEngine;
  server: ServeServer;
  url: string;
  stopIds: number[];
}

export interface ServeFixtureOptions {
  apiKey?: string;
  cors?: string;
  maxBatch?: number;
  maxQueue?: number;
  contextTokens?: number;
  limits?: Partial<ServeLimits>;
  databases?: ReadonlyMap<string, SqlDatabase>;
  sql?: SqlPrompting;
  /** Serve the toy model taught SQL (with its adapter and the prompt settings it records) instead of the tiny chat model. */
  sqlToy?: boolean;
  log?: (line: string) => void;
}

const NO_SQL: SqlPrompting = {
  messages: () => Promise.reject(new Error('this fixture serves no SQL prompts')),
  extractSql: (s) => s,
};

export async function serveTinyModel(opts: ServeFixtureOptions = {}): Promise<ServedModel> {
  const dir = mkdtempSync(join(tmpdir(), 'sqlora-serve-model-'));
  if (opts.sqlToy) buildSqlToyModel(dir);
  else writeTinyChatModel(dir, 3);
  const model = Qwen2Model.load(dir, new CpuBackend());
  if (opts.sqlToy) model.setLora(LoraAdapter.upload(model.backend, model.config, readPeftAdapter(SQL_ADAPTER_DIR)));
  const tokenizer = Tokenizer.fromModelDir(dir);
  const template = ChatTemplate.fromModelDir(dir);
  const stopIds = ['<|im_end|>', '<|endoftext|>'].map((t) => tokenizer.tokenId(t)!);
  const engine = createServeEngine({
    modelId: 'tiny-chat',
    model,
    tokenizer,
    template,
    stopIds,
    padId: stopIds[1],
    sql:
      opts.sql ??
      (opts.sqlToy ? adapterPrompting(readPromptSettings(SQL_ADAPTER_DIR).settings, template, tokenizer) : NO_SQL),
    maxBatch: opts.maxBatch ?? 4,
    contextTokens: opts.contextTokens ?? 256,
    maxQueue: opts.maxQueue ?? 64,
  });
  const limits: ServeLimits = { ...DEFAULT_SERVE_LIMITS, query: DEFAULT_LIMITS, ...opts.limits };
  const server = createServeServer({
    engine,
    databases: opts.databases ?? new Map(),
    limits,
    apiKey: opts.apiKey,
    cors: opts.cors,
    log: opts.log ?? (() => {}),
  });
  const { url } = await server.listen(0, '127.0.0.1');
  return { dir, model, tokenizer, template, engine, server, url, stopIds };
}
