/**
 * Compares sqlora's MMLU scoring with the HF transformers + PEFT fixture written by
 * tools/reference/mmlu_reference.py (default test/fixtures/mmlu/reference.json): the prompts
 * (sha256 of every context), the per-choice log-likelihoods (max |diff| <= 1e-4) and the
 * predicted letters, for both tiny models, base and adapter, 0-shot and 5-shot. Exits 1 on any
 * difference beyond that.
 *
 * Run: npx tsx tools/mmlu/check-reference.ts [FILE]
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CpuBackend } from '../../src/backend/cpu/cpu-backend.js';
import { Tokenizer } from '../../src/data/tokenizer.js';
import { readMmlu, selectQuestions } from '../../src/eval/mmluData.js';
import { mmluContext } from '../../src/eval/mmluPrompt.js';
import { runMmlu } from '../../src/eval/mmluRun.js';
import { argmax } from '../../src/eval/mmluScore.js';
import { LoraAdapter } from '../../src/lora/lora.js';
import { readPeftAdapter } from '../../src/lora/peft.js';
import { Qwen2Model } from '../../src/model/qwen2.js';
import { readJsonFile } from '../../src/util/jsonl.js';

interface Fixture {
  sets: Record<'0shot' | '5shot', { subject: string; index: number; context_sha256: string }[]>;
  logliks: Record<string, Record<'base' | 'adapter', Record<'0shot' | '5shot', number[][]>>>;
}

const FIX = join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'mmlu');
const ref = readJsonFile<Fixture>(process.argv[2] ?? join(FIX, 'reference.json'), 'MMLU reference fixture');
const set = await readMmlu(join(FIX, 'csv'));
const sels = {
  '0shot': selectQuestions(set, { shots: 0 }),
  '5shot': selectQuestions(set, { shots: 5, limit: 8 }),
} as const;
let failed = false;
for (const [name, sel] of Object.entries(sels) as [keyof typeof sels, (typeof sels)[keyof typeof sels]][]) {
  const want = ref.sets[name];
  const bad = sel.questions.filter((q, i) => {
    const sha = createHash('sha256')
      .update(mmluContext(q, sel.fewShot.get(q.subject) ?? []))
      .digest('hex');
    return want[i]?.subject !== q.subject || want[i]?.index !== q.index || want[i]?.context_sha256 !== sha;
  });
  console.log(`${name}: ${sel.questions.length} prompts, ${bad.length} differ from the harness-semantics script's`);
  failed ||= bad.length > 0 || want.length !== sel.questions.length;
}
for (const variant of Object.keys(ref.logliks)) {
  const dir = join(FIX, `model-${variant}`);
  const model = Qwen2Model.load(dir, new CpuBackend());
  const tokenizer = Tokenizer.fromModelDir(dir);
  const adapter = LoraAdapter.upload(model.backend, model.config, readPeftAdapter(join(FIX, 'adapter')));
  for (const [name, sel] of Object.entries(sels) as [keyof typeof sels, (typeof sels)[keyof typeof sels]][]) {
    const r = runMmlu({
      model,
      tokenizer,
      adapter,
      ...sel,
      batchSize: 0,
      progressPath: null,
      settings: {},
      quiet: true,
    });
    for (const which of ['base', 'adapter'] as const) {
      const hf = ref.logliks[variant][which][name];
      let worst = 0,
        predsDiffer = 0;
      r.questions.forEach((q, i) => {
        const ours = q[which]!.loglik;
        ours.forEach((l, k) => (worst = Math.max(worst, Math.abs(l - hf[i][k]))));
        if (argmax(hf[i]) !== q[which]!.pred) predsDiffer++;
      });
      const ok = worst <= 1e-4 && predsDiffer === 0 && hf.length === r.questions.length;
      failed ||= !ok;
      console.log(
        `${variant} ${which} ${name}: ${r.questions.length} questions (${r.singleToken} one-pass), max |loglik diff| ${worst.toExponential(2)}, ${predsDiffer} predictions differ${ok ? '' : '  FAIL'}`,
      );
    }
  }
}
process.exitCode = failed ? 1 : 0;
