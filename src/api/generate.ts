/**
 * Text-to-SQL generation for library users: prompts (text, as `prepare` writes them) -> the
 * model's replies and the SQL in them, greedy by default, as `sqlora baseline` and `eval` run it.
 */
import { extractSql } from '../eval/extractSql.js';
import { generate } from '../model/generate.js';
import { GREEDY, type SamplingOptions } from '../model/sampling.js';
import type { SqlGenerator } from '../serve/sqlGenerator.js';
import { decodeBatchSize, type LoadedModel } from './load.js';

export interface GenerateSqlOptions {
  /** Default 128. */
  maxNewTokens?: number;
  /** Prompts decoded together; default: what pays on the backend (8 on the CPU, 64 on a GPU). */
  batchSize?: number;
  /** Default greedy (temperature 0). */
  sampling?: SamplingOptions;
  /** Called as each prompt finishes (in completion order), e.g. for progress. */
  onResult?(index: number, reply: SqlReply): void;
}

export interface SqlReply {
  /** The model's reply, decoded. */
  raw: string;
  /** The SQL in it (the reference workflow's post-processing: see extractSql). */
  sql: string;
  finishReason: 'stop' | 'length';
  /** Tokens of the prompt, and those the model generated for it. */
  promptTokens: number;
  newTokens: number;
}

export async function generateSql(
  loaded: LoadedModel,
  prompts: readonly string[],
  opts: GenerateSqlOptions = {},
): Promise<SqlReply[]> {
  const encoded = prompts.map((p) => loaded.tokenizer.encode(p));
  const reply = (index: number, ids: number[], finishReason: SqlReply['finishReason']): SqlReply => {
    const raw = loaded.tokenizer.decode(ids);
    return { raw, sql: extractSql(raw), finishReason, promptTokens: encoded[index].length, newTokens: ids.length };
  };
  const results = await generate(loaded.model, encoded, {
    maxNewTokens: opts.maxNewTokens ?? 128,
    batchSize: decodeBatchSize(opts.batchSize ?? 0, loaded),
    stopIds: loaded.stopIds,
    padId: loaded.padId,
    sampling: opts.sampling ?? GREEDY,
    onResult: opts.onResult ? (i, g) => opts.onResult?.(i, reply(i, g.newIds, g.finishReason)) : undefined,
  });
  return results.map((g, i) => reply(i, g.newIds, g.finishReason));
}

/** generateSql for one question at a time, behind the interface `askQuestion` takes. */
export function sqlGenerator(loaded: LoadedModel, opts: Pick<GenerateSqlOptions, 'maxNewTokens'> = {}): SqlGenerator {
  return {
    async generateSql(prompt) {
      const [r] = await generateSql(loaded, [prompt], { ...opts, batchSize: 1 });
      return { sql: r.sql, raw: r.raw, promptTokens: r.promptTokens, newTokens: r.newTokens };
    },
  };
}
