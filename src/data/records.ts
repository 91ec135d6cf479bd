/**
 * What `sqlora prepare` writes: one PromptRecord per line of train.jsonl / eval.jsonl, and a
 * DatasetCard in dataset.json. Training, baseline and evaluation read these.
 */
import type { BirdDifficulty } from '../eval/birdExecution.js';
import type { Hardness } from '../eval/hardness.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile } from '../util/jsonl.js';
import type { PairChecks } from './pairsChecks.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface PromptRecord {
  /** `<split>-<index in the source file>`: `train-12`, `others-3`, `dev-0`. */
  id: string;
  db_id: string;
  question: string;
  /** BIRD's external knowledge for the question (BIRD sources only). */
  evidence?: string;
  /** The gold SQL, as in the source. */
  query: string;
  /** Spider's difficulty level of the gold SQL; null where Spider's parser rejects the gold SQL. */
  hardness: Hardness | null;
  /** BIRD's difficulty of the question (BIRD dev only). */
  difficulty?: BirdDifficulty;
  /** Your own pairs: the absolute path of the record's SQLite file (evaluation runs on it). */
  db_path?: string;
  /** system, user, assistant (the gold SQL). */
  messages: ChatMessage[];
  /** The whole conversation rendered by the model's chat template: what training sees. */
  text: string;
  /**
   * The conversation up to the assistant's answer (rendered with add_generation_prompt): what
   * generation starts from. Always a prefix of `text`; the rest of `text` is the completion.
   */
  prompt: string;
}

/** p50/p90/p99/max of a length distribution (nearest-rank percentiles). */
export interface LengthStats {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface SplitCard {
  /** Records written. */
  count: number;
  /** Examples the source split held (before --*-limit / --shuffle). */
  available: number;
  /** Tokens of `prompt` and of `text`, by the model's tokenizer. */
  tokens: { prompt: LengthStats; text: LengthStats };
  /** Records per hardness level; `unparsed`: gold SQL that Spider's parser rejects. */
  hardness?: Record<Hardness | 'unparsed', number>;
  /** BIRD sources, instead of hardness: records per BIRD difficulty (`unknown`: train.json has none). */
  difficulty?: Record<BirdDifficulty | 'unknown', number>;
  /** Prompts whose schema had to lose sample rows or whole tables to fit --max-prompt-tokens. */
  trimmed: { sample_rows: number; tables: number };
  /** Prompts still over --max-prompt-tokens with a single table and no sample rows. */
  over_budget: number;
}

export interface DatasetCard {
  format: string;
  source: {
    layout: 'spider-folder' | 'hf-parquet' | 'bird' | 'pairs';
    path: string;
    train_files: string[];
    eval_files: string[];
    databases: string;
  };
  model: { dir: string };
  options: {
    train_limit: number;
    eval_limit: number;
    shuffle: boolean;
    seed: number | null;
    train_splits: string;
    sample_rows: number;
    max_prompt_tokens: number;
    /** BIRD: whether prompts show the evidence. */
    evidence?: boolean;
    /** Pairs: how eval was chosen (a drawn split, or a file of its own). */
    eval_fraction?: number;
    split_by?: string;
    split_seed?: number;
    eval_pairs?: string;
    /** Pairs on PostgreSQL: the dialect the prompts name (sqlora.json records it for ask/serve); absent means SQLite. */
    dialect?: 'postgresql';
  };
  /** Pairs: what the checks kept out before writing. */
  checks?: PairChecks;
  /** How records were picked: the first N in file order, or a seeded random subset (kept in file order). */
  selection: string;
  train: SplitCard;
  eval: SplitCard;
}

/** DIR/dataset.json as `sqlora prepare` wrote it, or null when there is none (a malformed one is a UserError). */
export function readDatasetCard(dir: string): Partial<DatasetCard> | null {
  const path = join(dir, DATASET_CARD_FILE);
  return existsSync(path) ? readJsonFile<Partial<DatasetCard>>(path, 'dataset card') : null;
}

export const DATASET_CARD_FILE = 'dataset.json';
