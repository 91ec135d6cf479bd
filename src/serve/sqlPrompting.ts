/**
 * The prompt /v1/sql sends for a question on a database, built as the adapter was trained
 * (its recorded prompt settings, data/promptSettings.ts), and the SQL taken from the answer as
 * eval and ask take it.
 */
import type { ChatRenderer, TokenCounter } from '../data/prompts.js';
import type { PromptSettings } from '../data/promptSettings.js';
import { extractSql } from '../eval/extractSql.js';
import type { SqlPrompting } from './engine.js';
import { QuestionPrompter } from './questionPrompts.js';

/** Prompts in the adapter's recorded format (schema or seed, sample rows, budget, system prompt), naming each database's dialect. */
export function adapterPrompting(
  settings: PromptSettings,
  template: ChatRenderer,
  tokenizer: TokenCounter,
): SqlPrompting {
  const prompter = new QuestionPrompter(template, tokenizer, settings);
  return {
    messages: async (db, question, evidence) => (await prompter.prompt(db, question, evidence)).messages,
    extractSql,
  };
}
