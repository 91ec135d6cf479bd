/**
 * Prompt formats: the messages of one example and their rendering by the model's chat template.
 *
 * - `seed`: the reference workflow's prompt, byte for byte: no schema, only the database name.
 *   The reference wrote its ChatML by hand, so its `text` ends with `<|im_end|>` where Qwen's
 *   template renders `<|im_end|>\n`; we render with the template and drop that trailing newline
 *   (checked against the reference's published rows in test/data-prompts.test.ts).
 * - `schema`: the database's tables as SQLite CREATE TABLE statements (see sqliteSchema.ts),
 *   optionally K sample rows per table as INSERT statements, then the question and an
 *   instruction to answer with one SQLite query. The rendered prompt is kept within a token
 *   budget, see fitSchema below. Its `text` is the template's output unchanged. For another
 *   dialect (PostgreSQL) the statements, the system prompt and the instruction name it instead.
 */
import Database from 'better-sqlite3';
import { UserError, describeError } from '../util/errors.js';
import type { ChatMessage } from './records.js';
import { createTableStatement, readTables, sampleRowsSql, type SqlDialect, type TableInfo } from './sqliteSchema.js';

export type PromptFormat = 'seed' | 'schema';
export const PROMPT_FORMATS: readonly PromptFormat[] = ['seed', 'schema'];

/** What prompts need from a chat template (ChatTemplate fits). */
export interface ChatRenderer {
  render(messages: ChatMessage[], options: { addGenerationPrompt: boolean }): string;
}

/** What prompts need from a tokenizer (Tokenizer fits). */
export interface TokenCounter {
  encode(text: string): number[];
}

export interface Question {
  db_id: string;
  question: string;
  /** Gold SQL; absent when building a prompt to generate from. */
  query?: string;
}

export const SEED_SYSTEM =
  'You are an expert SQL assistant that converts natural language questions into accurate SQL queries.';

export function seedUserMessage(dbId: string, question: string): string {
  return (
    'You are an expert SQL assistant. Given a natural language question and a database name, write the correct SQL query.\n\n' +
    `Database: ${dbId}\nQuestion: ${question}\n\nWrite only the SQL query, nothing else.`
  );
}

/** How prompts name a dialect. */
export const DIALECT_NAMES: Record<SqlDialect, string> = { sqlite: 'SQLite', postgresql: 'PostgreSQL' };

export function schemaSystem(dialect: SqlDialect): string {
  const d = DIALECT_NAMES[dialect];
  return `You are an expert SQL assistant. Given the schema of a ${d} database and a question, you write the ${d} query that answers the question.`;
}

export const SCHEMA_SYSTEM = schemaSystem('sqlite');

export function schemaUserMessage(
  dbId: string,
  statements: string[],
  question: string,
  dialect: SqlDialect = 'sqlite',
): string {
  return `Database: ${dbId}\n\n${statements.join('\n')}\n\nQuestion: ${question}\n\nAnswer with one ${DIALECT_NAMES[dialect]} query and nothing else.`;
}

// Words too common in questions to say anything about which table is meant.
const STOPWORDS = new Set(
  'a an the of in on at to for from by with and or not no is are was were be been do does did has have had what which who whom whose when where how many much all each every any some their its his her them they that this these those there than more most less least me give show list find return tell'.split(
    ' ',
  ),
);

/** Lower-case word stems of a name or sentence: camelCase and snake_case split, plural `s` dropped. */
export function wordStems(text: string): string[] {
  return text
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '')
    .map((w) => {
      if (w.length > 4 && w.endsWith('ies')) return w.slice(0, -3) + 'y';
      if (w.length > 3 && w.endsWith('s') && !w.endsWith('ss')) return w.slice(0, -1);
      return w;
    });
}

/**
 * The order in which tables are given up when a prompt is over budget, least related to the
 * question first. Score: 2 per distinct question word in the table's name + 1 per distinct
 * question word in its column names (stems, stopwords ignored), + 0.5 for each table that scored
 * and is linked to it by a foreign key (either way), so a table joining two matched tables outlasts
 * a loosely matched one. Ties: later tables go first.
 */
export function dropOrder(tables: readonly TableInfo[], question: string): number[] {
  const q = new Set(wordStems(question).filter((w) => !STOPWORDS.has(w)));
  const hits = (words: Iterable<string>): number => {
    let n = 0;
    for (const w of new Set(words)) if (q.has(w)) n++;
    return n;
  };
  const scores = tables.map((t) => 2 * hits(wordStems(t.name)) + hits(t.columns.flatMap((c) => wordStems(c.name))));
  const index = new Map(tables.map((t, i) => [t.name.toLowerCase(), i]));
  const links = tables.map(() => new Set<number>());
  tables.forEach((t, i) => {
    for (const fk of t.foreignKeys) {
      const j = index.get(fk.table.toLowerCase());
      if (j === undefined || j === i) continue;
      if (scores[j] > 0) links[i].add(j);
      if (scores[i] > 0) links[j].add(i);
    }
  });
  const final = scores.map((s, i) => s + 0.5 * links[i].size);
  return tables.map((_, i) => i).sort((a, b) => final[a] - final[b] || b - a);
}

/** A database's schema as a prompt shows it: tables and, per table, its sample rows as one INSERT ('' for none). */
export interface SchemaSource {
  /** Identifies the database for caching (a path, a server's database name). */
  key: string;
  dialect: SqlDialect;
  tables: TableInfo[];
  sampleRows: string[];
}

/** A database's statements and their token counts, computed once per database. */
interface SchemaParts {
  dialect: SqlDialect;
  tables: TableInfo[];
  create: string[];
  rows: string[];
  createTokens: number[];
  rowTokens: number[];
}

export interface PromptOptions {
  format: PromptFormat;
  /** Sample rows per table in the `schema` format (0: none). */
  sampleRows: number;
  /** Budget for the rendered prompt, in tokens (`schema` trims to it; both formats count overruns). */
  maxPromptTokens: number;
  /** System prompt in place of the format's own (an adapter's recorded one, see promptSettings.ts). */
  system?: string;
}

export interface BuiltPrompt {
  messages: ChatMessage[];
  /** Whole conversation; equal to `prompt` when the question has no gold query. */
  text: string;
  prompt: string;
  promptTokens: number;
  textTokens: number;
  /** The schema lost sample rows / whole tables to fit the budget. */
  trimmedRows: boolean;
  trimmedTables: boolean;
  overBudget: boolean;
}

export class PromptBuilder {
  private readonly schemas = new Map<string, SchemaParts>();

  constructor(
    private readonly template: ChatRenderer,
    private readonly tokenizer: TokenCounter,
    readonly options: PromptOptions,
  ) {}

  /** Builds the messages and renderings of one example; `sqlitePath` is its database. */
  build(q: Question, sqlitePath: string): BuiltPrompt {
    return this.buildWith(q, () => this.sqliteParts(sqlitePath));
  }

  /** Builds one example's prompt from a schema read elsewhere (a PostgreSQL catalog, any SqlDatabase). */
  buildFor(q: Question, source: SchemaSource): BuiltPrompt {
    return this.buildWith(q, () => this.sourceParts(source));
  }

  private buildWith(q: Question, parts: () => SchemaParts): BuiltPrompt {
    const fitted = this.options.format === 'seed' ? this.seed(q) : this.fitSchema(q, parts());
    const messages = [...fitted.head];
    let text = fitted.prompt;
    if (q.query !== undefined) {
      messages.push({ role: 'assistant', content: q.query });
      text = this.template.render(messages, { addGenerationPrompt: false });
      if (this.options.format === 'seed') text = text.replace(/\n+$/, '');
      if (!text.startsWith(fitted.prompt)) {
        throw new UserError(
          'the chat template renders the generation prompt differently from the start of the assistant turn; prompts must be a prefix of the full text for completion-only training',
        );
      }
    }
    const textTokens = text === fitted.prompt ? fitted.promptTokens : this.tokenizer.encode(text).length;
    return { ...fitted, messages, text, textTokens, overBudget: fitted.promptTokens > this.options.maxPromptTokens };
  }

  private render(head: ChatMessage[]): { prompt: string; promptTokens: number } {
    const prompt = this.template.render(head, { addGenerationPrompt: true });
    return { prompt, promptTokens: this.tokenizer.encode(prompt).length };
  }

  private seed(q: Question) {
    const head: ChatMessage[] = [
      { role: 'system', content: this.options.system ?? SEED_SYSTEM },
      { role: 'user', content: seedUserMessage(q.db_id, q.question) },
    ];
    return { head, ...this.render(head), trimmedRows: false, trimmedTables: false };
  }

  private sqliteParts(sqlitePath: string): SchemaParts {
    const parts = this.schemas.get(sqlitePath);
    if (parts) return parts;
    let tables: TableInfo[];
    let rows: string[];
    try {
      const db = new Database(sqlitePath, { readonly: true, fileMustExist: true });
      try {
        tables = readTables(db);
        rows = tables.map((t) => sampleRowsSql(db, t, this.options.sampleRows));
      } finally {
        db.close();
      }
    } catch (err) {
      throw new UserError(`cannot read the schema of ${sqlitePath}: ${describeError(err)}`);
    }
    return this.sourceParts({ key: sqlitePath, dialect: 'sqlite', tables, sampleRows: rows });
  }

  private sourceParts(source: SchemaSource): SchemaParts {
    let parts = this.schemas.get(source.key);
    if (parts && parts.tables === source.tables) return parts;
    const create = source.tables.map((t) => createTableStatement(t, source.dialect));
    const rows = source.tables.map((_, i) => (this.options.sampleRows > 0 ? (source.sampleRows[i] ?? '') : ''));
    const count = (s: string) => (s === '' ? 0 : this.tokenizer.encode(s + '\n').length);
    parts = {
      dialect: source.dialect,
      tables: source.tables,
      create,
      rows,
      createTokens: create.map(count),
      rowTokens: rows.map(count),
    };
    this.schemas.set(source.key, parts);
    return parts;
  }

  /**
   * Keeps the rendered prompt within maxPromptTokens: first sample rows go, table by table,
   * then whole tables, both in dropOrder (least related to the question first); at least one
   * table stays and no statement is ever cut. Statement token counts (measured alone) estimate
   * how much to drop; the rendered prompt is then measured for real and trimming goes on if the
   * estimate was short. If the minimum still does not fit it is kept and counted as over budget.
   */
  private fitSchema(q: Question, s: SchemaParts) {
    const keepTable = s.tables.map(() => true);
    const keepRows = s.rows.map((r) => r !== '');
    const head = (): ChatMessage[] => {
      const statements: string[] = [];
      s.tables.forEach((_, i) => {
        if (!keepTable[i]) return;
        statements.push(s.create[i]);
        if (keepRows[i]) statements.push(s.rows[i]);
      });
      return [
        { role: 'system', content: this.options.system ?? schemaSystem(s.dialect) },
        { role: 'user', content: schemaUserMessage(q.db_id, statements, q.question, s.dialect) },
      ];
    };
    const order = dropOrder(s.tables, q.question);
    const steps = [
      ...order.filter((i) => keepRows[i]).map((i) => ({ i, table: false })),
      ...order.slice(0, -1).map((i) => ({ i, table: true })),
    ];
    let current = head();
    let rendered = this.render(current);
    let next = 0;
    let trimmedRows = false;
    let trimmedTables = false;
    const budget = this.options.maxPromptTokens;
    while (rendered.promptTokens > budget && next < steps.length) {
      let estimate = rendered.promptTokens;
      do {
        const { i, table } = steps[next++];
        if (keepRows[i]) {
          estimate -= s.rowTokens[i];
          keepRows[i] = false;
          trimmedRows = true;
        }
        if (table) {
          estimate -= s.createTokens[i];
          keepTable[i] = false;
          trimmedTables = true;
        }
      } while (estimate > budget && next < steps.length);
      current = head();
      rendered = this.render(current);
    }
    return { head: current, ...rendered, trimmedRows, trimmedTables };
  }
}
