/**
 * Prompts for questions about a user's database, built as the adapter was trained (its
 * sqlora.json): the schema read from the database (SQLite file or PostgreSQL catalog) in the
 * same serialization as `prepare --format schema`, naming the database's dialect.
 */
import type { BuiltPrompt, ChatRenderer, SchemaSource, TokenCounter } from '../data/prompts.js';
import { questionWithEvidence } from '../data/bird.js';
import { PromptBuilder } from '../data/prompts.js';
import { promptOptions, type PromptSettings } from '../data/promptSettings.js';
import { insertRowsSql, type SqlDialect } from '../data/sqliteSchema.js';
import type { SqlDatabase } from './database.js';

/** A database's schema and sample rows as prompts show them. */
export async function readSchemaSource(db: SqlDatabase, sampleRows: number): Promise<SchemaSource> {
  const tables = await db.tables();
  const rows =
    sampleRows > 0
      ? await Promise.all(
          tables.map(async (t) =>
            insertRowsSql(t, await db.sampleRows(t.schema ? `${t.schema}.${t.name}` : t.name, sampleRows), db.dialect),
          ),
        )
      : tables.map(() => '');
  return { key: `${db.dialect}:${db.name}`, dialect: db.dialect, tables, sampleRows: rows };
}

export class QuestionPrompter {
  private readonly builders = new Map<SqlDialect, PromptBuilder>();
  private readonly sources = new Map<SqlDatabase, Promise<SchemaSource>>();

  constructor(
    private readonly template: ChatRenderer,
    private readonly tokenizer: TokenCounter,
    readonly settings: PromptSettings,
  ) {}

  /**
   * The prompt for `question` on `db` (its schema is read once per database); `evidence` (BIRD's
   * hint) goes into the question as prepare --bird puts it.
   */
  async prompt(db: SqlDatabase, question: string, evidence = ''): Promise<BuiltPrompt> {
    let source = this.sources.get(db);
    if (!source) {
      source = readSchemaSource(db, this.settings.format === 'schema' ? this.settings.sample_rows : 0);
      this.sources.set(db, source);
    }
    let builder = this.builders.get(db.dialect);
    if (!builder) {
      builder = new PromptBuilder(this.template, this.tokenizer, promptOptions(this.settings, db.dialect));
      this.builders.set(db.dialect, builder);
    }
    return builder.buildFor({ db_id: db.name, question: questionWithEvidence(question, evidence) }, await source);
  }
}
