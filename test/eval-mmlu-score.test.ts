import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { Tokenizer } from '../src/data/tokenizer.js';
import { readMmlu, selectQuestions, type MmluQuestion } from '../src/eval/mmluData.js';
import { encodeQuestion } from '../src/eval/mmluPrompt.js';
import { runMmlu, type MmluRunResult } from '../src/eval/mmluRun.js';
import { scoreSingleToken } from '../src/eval/mmluScore.js';
import { LoraAdapter } from '../src/lora/lora.js';
import { readPeftAdapter } from '../src/lora/peft.js';
import { Qwen2Model } from '../src/model/qwen2.js';

const FIX = join(import.meta.dirname, 'fixtures', 'mmlu');

function load(name: 'model-letters' | 'model-bytes'): {
  model: Qwen2Model;
  tokenizer: Tokenizer;
  adapter: LoraAdapter;
} {
  const dir = join(FIX, name);
  const model = Qwen2Model.load(dir, new CpuBackend());
  const adapter = LoraAdapter.upload(model.backend, model.config, readPeftAdapter(join(FIX, 'adapter')));
  return { model, tokenizer: Tokenizer.fromModelDir(dir), adapter };
}

const set = await readMmlu(join(FIX, 'csv'));
const zeroShot = selectQuestions(set, { shots: 0, limit: 2 });
const fiveShot = selectQuestions(set, { shots: 5, subjects: ['world_religions'], limit: 1 });

function run(
  m: ReturnType<typeof load>,
  sel: { questions: MmluQuestion[]; fewShot: Map<string, MmluQuestion[]> },
  extra: { batchSize?: number; forceGeneral?: boolean; adapter?: boolean } = {},
): MmluRunResult {
  return runMmlu({
    model: m.model,
    tokenizer: m.tokenizer,
    adapter: extra.adapter === false ? null : m.adapter,
    questions: sel.questions,
    fewShot: sel.fewShot,
    batchSize: extra.batchSize ?? 0,
    progressPath: null,
    settings: {},
    quiet: true,
    forceGeneral: extra.forceGeneral,
  });
}

function maxDiff(a: MmluRunResult, b: MmluRunResult, which: 'base' | 'adapter'): number {
  let worst = 0;
  a.questions.forEach((q, i) => {
    const x = q[which]!.loglik,
      y = b.questions[i][which]!.loglik;
    for (let k = 0; k < 4; k++) worst = Math.max(worst, Math.abs(x[k] - y[k]));
  });
  return worst;
}

describe('MMLU scoring', () => {
  const letters = load('model-letters');

  it('one pass per question gives the general path log-likelihoods and predictions (0- and 5-shot, base and adapter)', () => {
    for (const sel of [zeroShot, fiveShot]) {
      const fast = run(letters, sel);
      const general = run(letters, sel, { forceGeneral: true });
      expect(fast.singleToken).toBe(sel.questions.length);
      expect(general.general).toBe(sel.questions.length);
      expect(maxDiff(fast, general, 'base')).toBeLessThan(2e-5);
      expect(maxDiff(fast, general, 'adapter')).toBeLessThan(2e-5);
      expect(fast.questions.map((q) => [q.base.pred, q.adapter!.pred])).toEqual(
        general.questions.map((q) => [q.base.pred, q.adapter!.pred]),
      );
    }
  });

  it('the adapter changes the scores; the base scores are those of a run without an adapter', () => {
    const both = run(letters, zeroShot);
    const baseOnly = run(letters, zeroShot, { adapter: false });
    expect(both.questions.map((q) => q.base)).toEqual(baseOnly.questions.map((q) => q.base));
    expect(baseOnly.questions[0].adapter).toBeUndefined();
    expect(
      maxDiff(both, { ...both, questions: both.questions.map((q) => ({ ...q, adapter: q.base })) }, 'adapter'),
    ).toBeGreaterThan(0.01);
  });

  it('batching and left padding do not change the scores', () => {
    const one = run(letters, zeroShot, { batchSize: 1 });
    const seven = run(letters, zeroShot, { batchSize: 7 });
    expect(maxDiff(one, seven, 'base')).toBeLessThan(1e-5);
    expect(maxDiff(one, seven, 'adapter')).toBeLessThan(1e-5);
  });

  it('log-probabilities of the four letters are proper: each < 0 and their softmax mass is at most 1', () => {
    for (const q of run(letters, zeroShot).questions) {
      const mass = q.base.loglik.reduce((s, l) => s + Math.exp(l), 0);
      expect(mass).toBeLessThanOrEqual(1);
      expect(q.base.loglik.every((l) => l < 0)).toBe(true);
    }
  });

  it("two-token continuations take the general path: the sum of both tokens' log-probabilities", () => {
    const bytes = load('model-bytes');
    const sel = { questions: zeroShot.questions.slice(0, 4), fewShot: zeroShot.fewShot };
    const r = run(bytes, sel, { adapter: false });
    expect(r.general).toBe(4);
    expect(r.singleToken).toBe(0);
    // " A" is one token here (the merges spelling " Answer" pass through "ĠA"), " B".." D" two.
    const pairs = sel.questions.map((q) => encodeQuestion(bytes.tokenizer, q, []).pairs);
    expect(pairs[0].map((p) => p.continuation.length)).toEqual([1, 2, 2, 2]);
    // Independently, by the one-pass path token by token: sum_j log p(cont[j] | context, cont[<j]).
    pairs.forEach((four, i) => {
      four.forEach((p, k) => {
        let sum = 0;
        p.continuation.forEach((tok, j) => {
          sum += scoreSingleToken(bytes.model, [
            { input: [...p.context, ...p.continuation.slice(0, j)], targets: [tok] },
          ])[0][0];
        });
        expect(r.questions[i].base.loglik[k]).toBeCloseTo(sum, 4);
      });
    });
  });
});
