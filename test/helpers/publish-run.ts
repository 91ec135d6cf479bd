/** A finished training run for the publish tests: the report fixture's logs plus a PEFT adapter. */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import type { PublishFolderOptions } from '../../src/publish/publishFolder.js';

export const REPORT = 'test/fixtures/report';
export const PUBLISH = 'test/fixtures/publish';

let runCount = 0;

/** A new run folder under `root`. */
export function makeRun(root: string): string {
  const run = join(root, `run${runCount++}`);
  cpSync(join(REPORT, 'run'), run, { recursive: true });
  cpSync('test/fixtures/sqlora-adapter/adapter', join(run, 'adapter'), { recursive: true });
  return run;
}

/** Every input the card takes (eval, baseline, MMLU, prompt records), into RUN/publish. */
export function publishOptions(run: string, extra: Partial<PublishFolderOptions> = {}): PublishFolderOptions {
  return {
    run,
    repo: 'acme/qwen-sql',
    out: join(run, 'publish'),
    eval: join(REPORT, 'finetuned_results.json'),
    baseline: join(REPORT, 'baseline_results.json'),
    mmlu: join(PUBLISH, 'mmlu_results.json'),
    data: join(PUBLISH, 'data'),
    ...extra,
  };
}
