/**
 * sqlora's library API: everything the CLI does, as typed calls. The commands in src/cli are thin
 * callers of these.
 *
 *   import { prepareDataset, loadModel, generateSql, trainAdapter, evaluatePredictions } from 'sqlora';
 */
export { generateSql, sqlGenerator, type GenerateSqlOptions, type SqlReply } from './api/generate.js';
export { loadModel, END_OF_TURN, type LoadedModel, type LoadModelOptions } from './api/load.js';
export { DEFAULT_LORA, trainAdapter, type TrainAdapterOptions, type TrainAdapterResult } from './api/train.js';
export { readRecords } from './api/train-data.js';
export { createBackend, DEVICES } from './backend/select.js';
export type { Backend } from './backend/backend.js';
export { prepareDataset, type PrepareOptions } from './data/prepareDataset.js';
export { PROMPT_FORMATS, type PromptFormat } from './data/prompts.js';
export type { DatasetCard, PromptRecord } from './data/records.js';
export { Tokenizer } from './data/tokenizer.js';
export { defaultTokenizerDir } from './data/modelFiles.js';
/** A tiny random Qwen2 model with a shrunk tokenizer (the demo's), to try the API in seconds on the CPU. */
export { buildToyModel, type ToyModel } from './demo/toyModel.js';
export { runDoctor, formatDoctor, type DoctorCheck, type DoctorReport } from './doctor/doctor.js';
export { mmluEvaluate, type MmluOptions } from './eval/mmlu.js';
export type { MmluResults } from './eval/mmluSummary.js';
export {
  exportGguf,
  exportLoraGguf,
  exportMerged,
  GgufFile,
  type ExportGgufOptions,
  type ExportLoraGgufOptions,
  type ExportMergedOptions,
} from './export/index.js';
export { uploadToHub, type UploadOptions, type UploadResult } from './hub/upload.js';
export { buildPublishFolder, type PublishFolderOptions } from './publish/publishFolder.js';
export { askQuestion, type AskAnswer, type AskOptions } from './serve/ask.js';
export type { QueryLimits, QueryResult, SqlDatabase } from './serve/database.js';
export { openDatabase } from './serve/databases.js';
export { createServeEngine } from './serve/engine.js';
export { QuestionPrompter } from './serve/questionPrompts.js';
export { createServeServer, type ServeOptions } from './serve/server.js';
export {
  evaluatePredictions,
  formatSummaryTable,
  type EvaluateOptions,
  type EvaluationReport,
  type ExampleResult,
  type Summary,
} from './eval/evaluate.js';
export { extractSql } from './eval/extractSql.js';
export type { EvalItem } from './eval/predictions.js';
export { setupDifferences } from './report/compareSetup.js';
export type { LoraConfig } from './lora/lora.js';
export { generate, type GenerateOptions, type Generation } from './model/generate.js';
export type { SftConfig } from './train/sft.js';
export type { EvalRecord, TrainRecord } from './train/metrics.js';
export { UserError } from './util/errors.js';
