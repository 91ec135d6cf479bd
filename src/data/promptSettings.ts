/**
 * The prompt an adapter was trained on, recorded beside its PEFT files as `sqlora.json`, so that
 * `ask`, `serve` and `eval` show the model at inference what it saw in training: the prompt
 * format and its options (sample rows, token budget), the system prompt and the SQL dialect the
 * training prompts named. `sqlora train` takes them from the prepared data's dataset.json and
 * the system message of its records.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { DATASET_CARD_FILE, readDatasetCard } from './records.js';
import { PROMPT_FORMATS, SEED_SYSTEM, schemaSystem, type PromptFormat, type PromptOptions } from './prompts.js';
import type { SqlDialect } from './sqliteSchema.js';

export const PROMPT_SETTINGS_FILE = 'sqlora.json';
export const PROMPT_SETTINGS_VERSION = 'sqlora-prompt/1';

export interface PromptSettings {
  format: PromptFormat;
  sample_rows: number;
  max_prompt_tokens: number;
  system_prompt: string;
  /** The dialect the training prompts named (Spider: sqlite). */
  dialect: SqlDialect;
  /**
   * Whether the training prompts carried the question's evidence (BIRD, or pairs with an
   * evidence column; dataset.json's options.evidence). Absent: the data had none (Spider).
   */
  evidence?: boolean;
}

/** What `sqlora prepare` writes by default (checked against its flags in test/prompt-settings.test.ts). */
export const DEFAULT_PROMPT_SETTINGS: PromptSettings = {
  format: 'schema',
  sample_rows: 0,
  max_prompt_tokens: 448,
  system_prompt: schemaSystem('sqlite'),
  dialect: 'sqlite',
};

const DIALECTS: readonly SqlDialect[] = ['sqlite', 'postgresql'];

function formatSystem(format: PromptFormat, dialect: SqlDialect): string {
  return format === 'seed' ? SEED_SYSTEM : schemaSystem(dialect);
}

/**
 * The settings of training data prepared in `dataDir` (its dataset.json; the system prompt from
 * the first record of `trainFile`), or null when the folder has no dataset.json.
 */
export function promptSettingsFromDataset(dataDir: string, trainFile: string): PromptSettings | null {
  const card = readDatasetCard(dataDir);
  if (!card) return null;
  const cardPath = join(dataDir, DATASET_CARD_FILE);
  const format = card.format as PromptFormat;
  if (!PROMPT_FORMATS.includes(format))
    throw new UserError(
      `${cardPath}: "format" must be one of ${PROMPT_FORMATS.join(', ')}, got ${String(card.format)}`,
    );
  const dialect = DIALECTS.includes(card.options?.dialect as SqlDialect)
    ? (card.options?.dialect as SqlDialect)
    : 'sqlite';
  return {
    format,
    sample_rows: card.options?.sample_rows ?? 0,
    max_prompt_tokens: card.options?.max_prompt_tokens ?? DEFAULT_PROMPT_SETTINGS.max_prompt_tokens,
    system_prompt: firstSystemMessage(trainFile) ?? formatSystem(format, dialect),
    dialect,
    ...(typeof card.options?.evidence === 'boolean' ? { evidence: card.options.evidence } : {}),
  };
}

function firstSystemMessage(trainFile: string): string | null {
  try {
    const first = readFileSync(trainFile, 'utf8').split('\n', 1)[0];
    const rec = JSON.parse(first) as { messages?: { role?: string; content?: unknown }[] };
    const m = rec.messages?.[0];
    return m?.role === 'system' && typeof m.content === 'string' ? m.content : null;
  } catch {
    return null;
  }
}

/** sqlora.json's text. */
export function promptSettingsJson(settings: PromptSettings): string {
  return JSON.stringify({ sqlora: PROMPT_SETTINGS_VERSION, prompt: settings }, null, 2) + '\n';
}

export function writePromptSettings(adapterDir: string, settings: PromptSettings): void {
  writeFileSync(join(adapterDir, PROMPT_SETTINGS_FILE), promptSettingsJson(settings));
}

export interface ReadPromptSettings {
  settings: PromptSettings;
  /** Set when the adapter records none (trained before sqlora.json, or elsewhere): the defaults are used. */
  warning: string | null;
}

/** The adapter's recorded prompt settings, or the defaults with a warning where it has none. */
export function readPromptSettings(adapterDir: string): ReadPromptSettings {
  const path = join(adapterDir, PROMPT_SETTINGS_FILE);
  if (!existsSync(path)) {
    return {
      settings: DEFAULT_PROMPT_SETTINGS,
      warning: `${adapterDir} has no ${PROMPT_SETTINGS_FILE} (an adapter trained before sqlora recorded its prompt, or elsewhere): using the default prompt (format schema, no sample rows, ${DEFAULT_PROMPT_SETTINGS.max_prompt_tokens} tokens); if it was trained on another, answers will suffer`,
    };
  }
  const raw = readJsonFile<{ sqlora?: unknown; prompt?: Partial<Record<keyof PromptSettings, unknown>> } | null>(
    path,
    'prompt settings',
  );
  if (raw?.sqlora !== PROMPT_SETTINGS_VERSION)
    throw new UserError(`${path}: "sqlora" must be "${PROMPT_SETTINGS_VERSION}", got ${JSON.stringify(raw?.sqlora)}`);
  const p = raw.prompt ?? {};
  const bad = (field: string, want: string) =>
    new UserError(
      `${path}: "prompt.${field}" must be ${want}, got ${JSON.stringify(p[field as keyof PromptSettings])}`,
    );
  if (!PROMPT_FORMATS.includes(p.format as PromptFormat)) throw bad('format', PROMPT_FORMATS.join(' or '));
  if (!Number.isInteger(p.sample_rows) || (p.sample_rows as number) < 0)
    throw bad('sample_rows', 'a whole number >= 0');
  if (!Number.isInteger(p.max_prompt_tokens) || (p.max_prompt_tokens as number) < 1)
    throw bad('max_prompt_tokens', 'a whole number >= 1');
  if (typeof p.system_prompt !== 'string') throw bad('system_prompt', 'a string');
  if (!DIALECTS.includes(p.dialect as SqlDialect)) throw bad('dialect', DIALECTS.join(' or '));
  if (p.evidence !== undefined && typeof p.evidence !== 'boolean') throw bad('evidence', 'true or false');
  return { settings: p as PromptSettings, warning: null };
}

/**
 * Options for a PromptBuilder that writes prompts for a database of `dialect`. The recorded
 * system prompt is kept as is, except the format's own, which names the dialect: that one is
 * rewritten for the database's (the adapter learnt from SQLite prompts; a PostgreSQL database
 * gets the same prompt naming PostgreSQL).
 */
export function promptOptions(settings: PromptSettings, dialect: SqlDialect): PromptOptions {
  const own = settings.system_prompt === formatSystem(settings.format, settings.dialect);
  return {
    format: settings.format,
    sampleRows: settings.format === 'schema' ? settings.sample_rows : 0,
    maxPromptTokens: settings.max_prompt_tokens,
    system: own ? formatSystem(settings.format, dialect) : settings.system_prompt,
  };
}

/** Whether prompts built with `a` and with `b` are the same (sample rows only count for the schema format). */
export function samePromptSettings(a: PromptSettings, b: PromptSettings): boolean {
  return (
    a.format === b.format &&
    a.max_prompt_tokens === b.max_prompt_tokens &&
    a.system_prompt === b.system_prompt &&
    a.dialect === b.dialect &&
    (a.format === 'seed' || a.sample_rows === b.sample_rows)
  );
}
