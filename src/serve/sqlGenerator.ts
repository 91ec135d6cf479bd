/**
 * What `askQuestion` needs to turn a prompt into SQL; the library's `sqlGenerator` (src/api)
 * provides it over a loaded model: greedy decoding, the reply read as `eval` reads it.
 */
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
