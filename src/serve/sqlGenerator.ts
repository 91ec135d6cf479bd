/**
 * SQL from a prompt with a loaded model: greedy decoding, the reply read as `eval` reads it
 * (extractSql). `ask` uses it one question at a time; `serve` may put its scheduler behind the
 * same interface.
 */
import type { Tokenizer } from '../data/tokenizer.js';
import { extractSql } from '../eval/extractSql.js';
import { generate } from '../model/generate.js';
import type { Qwen2Model } from '../model/qwen2.js';
import { GREEDY } from '../model/sampling.js';

export interface GeneratedSql {
  sql: string;
  /** The reply as generated, special tokens included. */
  raw: string;
  promptTokens: number;
  newTokens: number;
}

export interface SqlGenerator {
  generateSql(prompt: string): Promise<GeneratedSql>;
}

export interface ModelSqlGeneratorOptions {
  model: Qwen2Model;
  tokenizer: Tokenizer;
  stopIds: readonly number[];
  padId: number;
  maxNewTokens: number;
}

export class ModelSqlGenerator implements SqlGenerator {
  constructor(private readonly o: ModelSqlGeneratorOptions) {}

  async generateSql(prompt: string): Promise<GeneratedSql> {
    const ids = this.o.tokenizer.encode(prompt);
    const [g] = await generate(this.o.model, [ids], {
      maxNewTokens: this.o.maxNewTokens,
      batchSize: 1,
      stopIds: this.o.stopIds,
      padId: this.o.padId,
      sampling: GREEDY,
    });
    const raw = this.o.tokenizer.decode(g.newIds);
    return { sql: extractSql(raw), raw, promptTokens: ids.length, newTokens: g.newIds.length };
  }
}
