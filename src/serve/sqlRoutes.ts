/**
 * POST /v1/sql `{db, question, evidence?}`: the adapter's prompt for that database (its schema,
 * as in training; BIRD's evidence after the question, as prepare --bird puts it), greedy SQL from the model, run read-only on that database only. Answers
 * `{sql, columns, rows, row_count, truncated, elapsed_ms}` or, when the query fails,
 * `{sql, error}`. GET /v1/databases lists the databases and their tables (for the web page).
 */
import type { ServerResponse } from 'node:http';
import { QueryError, type SqlDatabase } from './database.js';
import type { ServeEngine, ServeLimits } from './engine.js';
import { field, HttpError, sendJson } from './http.js';
import { generateText } from './textGeneration.js';

export async function listDatabases(databases: ReadonlyMap<string, SqlDatabase>): Promise<unknown> {
  const data = await Promise.all(
    [...databases.values()].map(async (db) => ({
      name: db.name,
      dialect: db.dialect,
      tables: (await db.tables()).map((t) => ({
        name: t.name,
        columns: t.columns.map((c) => ({ name: c.name, type: c.type, primary_key: c.pk > 0 })),
      })),
    })),
  );
  return { object: 'list', data };
}

/** The database a request names: only those given on the command line (a Map: no prototype keys). */
export function namedDatabase(databases: ReadonlyMap<string, SqlDatabase>, name: string): SqlDatabase {
  const db = databases.get(name);
  if (!db)
    throw new HttpError(
      404,
      'no database of that name is served (GET /v1/databases lists them)',
      'not_found_error',
      'database_not_found',
    );
  return db;
}

export async function sqlQuestion(
  engine: ServeEngine,
  databases: ReadonlyMap<string, SqlDatabase>,
  limits: ServeLimits,
  body: Record<string, unknown>,
  res: ServerResponse,
): Promise<void> {
  const db = namedDatabase(databases, field.string(body, 'db', 256));
  const question = field.string(body, 'question', 4000).trim();
  if (question === '') throw new HttpError(400, '"question" is empty');
  const evidence = body.evidence === undefined || body.evidence === null ? '' : field.string(body, 'evidence', 4000);
  const messages = await engine.sql.messages(db, question, evidence);
  const promptIds = engine.tokenizer.encode(engine.template.render(messages, { addGenerationPrompt: true }));
  const maxTokens = Math.min(limits.sqlMaxTokens, engine.contextTokens - promptIds.length);
  if (maxTokens < 1)
    throw new HttpError(400, `the prompt for this database (${promptIds.length} tokens) leaves no room for an answer`);
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  const answer = await generateText(engine.scheduler, engine.tokenizer, engine.stopIds, {
    promptIds,
    maxTokens,
    sampling: { temperature: 0, topP: 1 },
    stop: [],
    signal: ac.signal,
  });
  if (answer.finishReason === 'cancelled') return void res.end();
  const sql = engine.sql.extractSql(answer.text);
  try {
    const r = await db.query(sql, limits.query);
    sendJson(res, 200, {
      sql,
      columns: r.columns,
      rows: r.rows,
      row_count: r.rowCount,
      truncated: r.truncated,
      elapsed_ms: Math.round(r.elapsedMs * 10) / 10,
    });
  } catch (err) {
    // A QueryError's message is written for users (no paths); anything else stays in the log.
    if (err instanceof QueryError) sendJson(res, 200, { sql, error: err.message });
    else throw err;
  }
}
