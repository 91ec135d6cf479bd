/**
 * The prompt /v1/sql sends for a question on a database, and the SQL taken from the answer.
 */
import { SCHEMA_SYSTEM, schemaUserMessage } from '../data/prompts.js';
import { createTableSql } from '../data/sqliteSchema.js';
import type { SqlPrompting } from './engine.js';

/** The statement in a model's answer: the inside of a ``` fence if there is one, trimmed, without a trailing ;. */
export function extractSql(answer: string): string {
  const fence = /```(?:sql|sqlite|postgresql)?\s*\n?([\s\S]*?)(?:```|$)/i.exec(answer);
  const body = fence ? fence[1] : answer;
  return body.trim().replace(/;\s*$/, '').trim();
}

/** The `schema` prompt format on any SqlDatabase. */
export function schemaPrompting(): SqlPrompting {
  return {
    async messages(db, question) {
      const statements = (await db.tables()).map(createTableSql);
      return [
        { role: 'system', content: SCHEMA_SYSTEM },
        { role: 'user', content: schemaUserMessage(db.name, statements, question) },
      ];
    },
    extractSql,
  };
}
