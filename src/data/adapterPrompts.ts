/**
 * `sqlora eval` with an adapter: the prepared eval records' prompts are used where they were built
 * as the adapter's sqlora.json says, and rebuilt from it where the data was prepared otherwise,
 * so the adapter is scored on the prompt it was trained on.
 */
import { ChatTemplate } from './chatTemplate.js';
import { PromptBuilder, type Question } from './prompts.js';
import {
  PROMPT_SETTINGS_FILE,
  promptOptions,
  readPromptSettings,
  samePromptSettings,
  type PromptSettings,
} from './promptSettings.js';
import { SpiderDatabases } from './spider.js';
import { Tokenizer } from './tokenizer.js';
import { UserError } from '../util/errors.js';

export interface EvalPromptPlan {
  /** Settings to rebuild the records' prompts with, or null to use the records' own. */
  rebuild: PromptSettings | null;
  /** What to tell the user, if anything. */
  note: string | null;
}

/**
 * Whether `sqlora eval` can use the prepared records' prompts for this adapter, or must rebuild
 * them from the adapter's sqlora.json (data prepared with other settings than it was trained on).
 * `dataSettings` are the eval data's (promptSettingsFromDataset), null when unknown.
 */
export function evalPromptPlan(adapterDir: string, dataSettings: PromptSettings | null): EvalPromptPlan {
  const recorded = readPromptSettings(adapterDir);
  if (recorded.warning)
    return {
      rebuild: null,
      note: `${adapterDir} records no prompt (${PROMPT_SETTINGS_FILE}): using the eval records' prompts as prepared`,
    };
  if (!dataSettings)
    return {
      rebuild: null,
      note: `the eval data has no dataset.json: its prompts cannot be checked against ${adapterDir}/${PROMPT_SETTINGS_FILE}`,
    };
  if (samePromptSettings(dataSettings, recorded.settings)) return { rebuild: null, note: null };
  const s = recorded.settings;
  return {
    rebuild: s,
    note: `the eval data was prepared with other prompt settings than ${adapterDir} was trained on: rebuilding its prompts as the adapter's ${PROMPT_SETTINGS_FILE} says (format ${s.format}, ${s.sample_rows} sample rows, ${s.max_prompt_tokens} tokens)`,
  };
}

/** The records' prompts as `settings` build them, on their Spider databases in `dbDir`. */
export function rebuildPrompts(
  records: readonly Question[],
  settings: PromptSettings,
  modelDir: string,
  dbDir: string | undefined,
): string[] {
  if (settings.format === 'schema' && dbDir === undefined)
    throw new UserError(`rebuilding the eval prompts in the schema format needs the databases: pass --spider DIR`);
  const databases = dbDir !== undefined ? SpiderDatabases.open(dbDir) : null;
  const builder = new PromptBuilder(
    ChatTemplate.fromModelDir(modelDir),
    Tokenizer.fromModelDir(modelDir),
    promptOptions(settings, settings.dialect),
  );
  return records.map((r) => {
    const path = databases ? databases.sqlitePath(r.db_id, `record for ${r.db_id}`) : '';
    return builder.build({ db_id: r.db_id, question: r.question }, path).prompt;
  });
}
