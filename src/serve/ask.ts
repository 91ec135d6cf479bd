/**
 * One question about a database, answered: the prompt the adapter was trained on, SQL from the
 * model, the SQL run read-only under limits. What `sqlora ask` prints (askFormat.ts) and what
 * `/v1/sql` answers.
 */
import type { QueryFailure, QueryLimits, QueryResult, SqlDatabase } from './database.js';
import { QueryError } from './database.js';
import type { QuestionPrompter } from './questionPrompts.js';
import type { SqlGenerator } from './sqlGenerator.js';

export interface AskAnswer {
  question: string;
  sql: string;
  /** The rows; null when the SQL was not run (sql-only) or failed. */
  result: QueryResult | null;
  error: { failure: QueryFailure | 'empty'; message: string } | null;
  promptTokens: number;
  newTokens: number;
  /** The schema did not fit the adapter's token budget even trimmed. */
  overBudget: boolean;
}

export interface AskOptions {
  /** Generate only; do not run the SQL. */
  sqlOnly?: boolean;
  /** BIRD's evidence for the question, put in the prompt as prepare --bird does. */
  evidence?: string;
  limits?: Partial<QueryLimits>;
}

export async function askQuestion(
  db: SqlDatabase,
  prompter: QuestionPrompter,
  generator: SqlGenerator,
  question: string,
  opts: AskOptions = {},
): Promise<AskAnswer> {
  const built = await prompter.prompt(db, question, opts.evidence);
  const g = await generator.generateSql(built.prompt);
  const answer: AskAnswer = {
    question,
    sql: g.sql,
    result: null,
    error: null,
    promptTokens: g.promptTokens,
    newTokens: g.newTokens,
    overBudget: built.overBudget,
  };
  if (opts.sqlOnly) return answer;
  if (g.sql === '') return { ...answer, error: { failure: 'empty', message: 'the model wrote no SQL' } };
  try {
    return { ...answer, result: await db.query(g.sql, opts.limits) };
  } catch (err) {
    if (!(err instanceof QueryError)) throw err;
    return { ...answer, error: { failure: err.failure, message: err.message } };
  }
}
