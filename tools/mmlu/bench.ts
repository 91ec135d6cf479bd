/**
 * MMLU scoring speed of sqlora, and beside it (--hf) the plain HF transformers loop of
 * tools/reference/mmlu_hf.py on the same prompts in the same call, with the ratio and how far
 * the two sets of log-likelihoods are apart (bf16 on a GPU: a tolerance, not equality).
 *
 *   npx tsx tools/mmlu/bench.ts --model DIR --data MMLU_DIR [--shots 0|5] [--quantize none|nf4]
 *       [--device auto|cuda|cpu] [--limit N] [--batch-size N] [--hf] [--out DIR]
 *
 * The goals of issue 18, on one H100 with the 1.8B model: the whole test set 0-shot in at most
 * 60 s of scoring, 5-shot in at most 5 minutes, and >= 5x the HF loop's questions/s. Writes
 * OUT/sqlora.json (sqlora mmlu's results), OUT/hf.json (with --hf) and OUT/bench.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../../src/api/load.js';
import { mmluEvaluate } from '../../src/eval/mmlu.js';
import { readJsonFile } from '../../src/util/jsonl.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    data: { type: 'string' },
    shots: { type: 'string', default: '0' },
    quantize: { type: 'string', default: 'none' },
    device: { type: 'string', default: 'auto' },
    limit: { type: 'string' },
    'batch-size': { type: 'string', default: '0' },
    hf: { type: 'boolean', default: false },
    out: { type: 'string', default: 'mmlu-bench' },
  },
});
if (!a.model || !a.data) throw new Error('give --model DIR and --data MMLU_DIR (the original CSV layout)');
const out = a.out!;
mkdirSync(out, { recursive: true });
const shots = Number(a.shots);
const limit = a.limit !== undefined ? Number(a.limit) : undefined;

const loaded = await loadModel({ model: a.model, device: a.device!, quantize: a.quantize! });
const ours = await mmluEvaluate({
  model: loaded.model,
  tokenizer: loaded.tokenizer,
  adapter: null,
  modelName: loaded.source,
  adapterName: null,
  data: a.data,
  limit,
  shots,
  batchSize: Number(a['batch-size']),
  quantize: a.quantize!,
  device: a.device!,
  out: join(out, `sqlora-${Date.now()}.json`),
});
const n = ours.questions.length;
const report: Record<string, unknown> = {
  questions: n,
  shots,
  quantize: a.quantize,
  device: ours.meta.device,
  sqlora: { seconds: ours.meta.scoring_seconds, questions_per_s: n / ours.meta.scoring_seconds },
  accuracy: ours.summary.overall.base.accuracy,
};
console.log(
  `sqlora: ${n} questions in ${ours.meta.scoring_seconds.toFixed(1)} s (${(n / ours.meta.scoring_seconds).toFixed(1)} questions/s)`,
);

if (a.hf) {
  const hfOut = join(out, 'hf.json');
  const gpu = loaded.model.backend.computeDType !== 'f32';
  const args = [
    join(import.meta.dirname, '..', 'reference', 'mmlu_hf.py'),
    '--model',
    loaded.dir,
    '--data',
    a.data,
    '--shots',
    String(shots),
    '--dtype',
    gpu ? 'bf16' : 'f32',
    '--quantize',
    a.quantize!,
    '--out',
    hfOut,
    ...(limit !== undefined ? ['--limit', String(limit)] : []),
  ];
  const r = spawnSync('python3', args, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`mmlu_hf.py failed (exit ${r.status})`);
  const hf = readJsonFile<{ seconds: number; device: string; questions: { loglik: number[] }[] }>(hfOut);
  let worst = 0,
    sum = 0,
    agree = 0;
  ours.questions.forEach((q, i) => {
    const h = hf.questions[i].loglik;
    q.base.loglik.forEach((l, k) => {
      worst = Math.max(worst, Math.abs(l - h[k]));
      sum += Math.abs(l - h[k]);
    });
    if (h.indexOf(Math.max(...h)) === q.base.pred) agree++;
  });
  report.hf = { seconds: hf.seconds, questions_per_s: n / hf.seconds, device: hf.device };
  report.speedup = hf.seconds / ours.meta.scoring_seconds;
  report.loglik_diff = { max: worst, mean: sum / (4 * n) };
  report.same_prediction = agree / n;
  console.log(
    `HF: ${hf.seconds.toFixed(1)} s; sqlora is ${(hf.seconds / ours.meta.scoring_seconds).toFixed(2)}x; ` +
      `|loglik diff| max ${worst.toExponential(2)} mean ${(sum / (4 * n)).toExponential(2)}; same letter on ${((100 * agree) / n).toFixed(2)}%`,
  );
}
writeFileSync(join(out, 'bench.json'), JSON.stringify(report, null, 2) + '\n');
