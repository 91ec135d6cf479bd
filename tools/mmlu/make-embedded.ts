/**
 * Writes assets/mmlu/: the MMLU selection shipped with sqlora (the default of `sqlora mmlu`).
 *
 * From the original release's CSVs (hendrycks/test at commit 785eba5, the layout of
 * /work/shared/mmlu), per subject in name order: PER_SUBJECT test questions drawn without
 * replacement by a partial Fisher-Yates shuffle over the row indices with
 * mulberry32(mixSeed(SEED, subject's position in the sorted list)), kept in file order, and all
 * of the subject's dev questions (the few-shot examples). Each record keeps `index`, its row in
 * the subject's test (or dev) file, so results line up with runs on the full set.
 *
 * Run: npx tsx tools/mmlu/make-embedded.ts [MMLU_DIR]   (default /work/shared/mmlu)
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readMmlu, type MmluQuestion } from '../../src/eval/mmluData.js';
import { mixSeed, mulberry32 } from '../../src/util/random.js';

const SEED = 2024;
const PER_SUBJECT = 20;

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = process.argv[2] ?? '/work/shared/mmlu';
const outDir = join(root, 'assets', 'mmlu');

function pick(n: number, k: number, seed: number): number[] {
  const rand = mulberry32(seed);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < Math.min(k, n); i++) {
    const j = i + Math.floor(rand() * (n - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, Math.min(k, n)).sort((a, b) => a - b);
}

const set = await readMmlu(source);
const subjects = [...set.test.keys()].sort();
const lines: string[] = [];
const record = (split: string, q: MmluQuestion): string =>
  JSON.stringify({
    split,
    subject: q.subject,
    index: q.index,
    question: q.question,
    choices: q.choices,
    answer: q.answer,
  });
let tests = 0,
  devs = 0;
subjects.forEach((s, si) => {
  const rows = set.test.get(s) ?? [];
  for (const i of pick(rows.length, PER_SUBJECT, mixSeed(SEED, si))) {
    lines.push(record('test', rows[i]));
    tests++;
  }
  for (const q of set.dev.get(s) ?? []) {
    lines.push(record('dev', q));
    devs++;
  }
});
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'questions.jsonl'), lines.join('\n') + '\n');
copyFileSync(join(source, 'LICENSE'), join(outDir, 'LICENSE'));
writeFileSync(
  join(outDir, 'README.md'),
  `# The MMLU selection shipped with sqlora

\`sqlora mmlu\` scores these questions when no \`--data\` is given, so the check runs offline.

- Source: MMLU (Hendrycks et al., ICLR 2021), the original CSV release from the public repository
  hendrycks/test at commit 785eba5 (2020-09-08; 14,079 test questions over 57 subjects). License:
  MIT, in \`LICENSE\` here.
- Selection: ${PER_SUBJECT} test questions per subject (${tests} in all, ${subjects.length} subjects) and every dev
  question (${devs}, the few-shot examples). Per subject, in name order, the test rows are drawn without
  replacement by a partial Fisher-Yates shuffle of the row indices driven by
  \`mulberry32(mixSeed(${SEED}, position of the subject in the sorted list))\` (src/util/random.ts), and kept in
  file order.
- Format: \`questions.jsonl\`, one question per line: \`split\` (test or dev), \`subject\`, \`index\` (the row in
  the subject's original \`{subject}_{split}.csv\`, 0-based), \`question\`, \`choices\` (4 strings), \`answer\` (0-3).
- Made by \`npx tsx tools/mmlu/make-embedded.ts /path/to/mmlu\` (deterministic: rerunning it on the same
  source rewrites the same bytes).

${PER_SUBJECT} questions per subject make a subject's accuracy coarse (one question = 5 points); the overall
figure over ${tests} questions detects paired differences of a few points (see \`sqlora mmlu\`'s output).
Use \`--data\` with the full release for figures comparable to published ones.
`,
);
console.log(`wrote ${outDir}: ${tests} test + ${devs} dev questions from ${source}`);
