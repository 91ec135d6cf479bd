/**
 * Manual measurement (not a test): @huggingface/tokenizers (tokenizers.js) against sqlora's own
 * tokenizer (src/data/tokenizer.ts) on the Qwen1.5 tokenizer.json.
 *
 *   npx tsx tools/tokenizer-compare/compare.ts [--spider DIR] [--reps N]
 *
 * 1. Exactness against the committed HF reference (test/fixtures/tokenizer/expected.json):
 *    encode and decode (with and without special tokens, and token by token) of the 80 reference
 *    strings, the 48 rendered chats, and the added-token variants.
 * 2. Speed on the full Spider prepare's tokenizer work: `prepare` (schema format, all train and
 *    dev examples) is run once with sqlora's tokenizer to get every record; then the `prompt` and
 *    `text` of each record are encoded by both tokenizers, in turns, best of --reps.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { defaultTokenizerDir } from '../../src/data/modelFiles.js';
import { prepareDataset } from '../../src/data/prepareDataset.js';
import type { PromptRecord } from '../../src/data/records.js';
import { Tokenizer } from '../../src/data/tokenizer.js';
import { readJsonl } from '../../src/util/jsonl.js';

interface Case {
  text: string;
  ids: number[];
  decoded: string;
  decoded_skip_special: string;
  token_decodes?: string[];
}
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const spider = arg('spider', '/work/shared/spider');
const reps = Number(arg('reps', '3'));

const dir = defaultTokenizerDir();
const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
const expected = JSON.parse(readFileSync('test/fixtures/tokenizer/expected.json', 'utf8')) as {
  strings: Case[];
  chat: { rendered: string; ids: number[] }[];
  added_token_variants: Case[];
};
const ours = Tokenizer.fromModelDir(dir);
const hf = new HfTokenizer(json, config);
const variantsJson = structuredClone(json);
variantsJson.added_tokens.push(
  ...JSON.parse(readFileSync('test/fixtures/tokenizer/added-token-variants.json', 'utf8')).added_tokens,
);
const hfVariants = new HfTokenizer(variantsJson, config);
const oursVariants = Tokenizer.fromJson(variantsJson, 'variants');

const same = (a: readonly unknown[], b: readonly unknown[]) => a.length === b.length && a.every((v, i) => v === b[i]);
const hfIds = (t: HfTokenizer, s: string) => t.encode(s, { add_special_tokens: false }).ids;
/** tokenizers.js's decode, with a throw (it refuses an empty id list) as its answer. */
const hfDecode = (t: HfTokenizer, ids: number[], skip = false): string => {
  try {
    return t.decode(ids, { skip_special_tokens: skip });
  } catch (err) {
    return `throws: ${(err as Error).message}`;
  }
};

function exactness(name: string, hfTok: HfTokenizer, ourTok: Tokenizer, cases: Case[]): void {
  const tally = { encode: [0, 0], decode: [0, 0], decodeSkip: [0, 0], tokenDecodes: [0, 0] };
  const failures: string[] = [];
  for (const c of cases) {
    const h = hfIds(hfTok, c.text),
      o = ourTok.encode(c.text);
    tally.encode[0] += +same(h, c.ids);
    tally.encode[1] += +same(o, c.ids);
    if (!same(h, c.ids) && failures.length < 8) failures.push(`encode ${JSON.stringify(c.text).slice(0, 70)}`);
    if (hfDecode(hfTok, c.ids) !== c.decoded && failures.length < 8)
      failures.push(
        `decode ${JSON.stringify(c.text).slice(0, 50)} -> ${JSON.stringify(hfDecode(hfTok, c.ids)).slice(0, 60)}`,
      );
    tally.decode[0] += +(hfDecode(hfTok, c.ids) === c.decoded);
    tally.decode[1] += +(ourTok.decode(c.ids) === c.decoded);
    tally.decodeSkip[0] += +(hfDecode(hfTok, c.ids, true) === c.decoded_skip_special);
    tally.decodeSkip[1] += +(ourTok.decode(c.ids, { skipSpecial: true }) === c.decoded_skip_special);
    if (c.token_decodes) {
      tally.tokenDecodes[0] += +same(
        c.ids.map((id) => hfDecode(hfTok, [id])),
        c.token_decodes,
      );
      tally.tokenDecodes[1] += +same(
        c.ids.map((id) => ourTok.decode([id])),
        c.token_decodes,
      );
    }
  }
  console.log(`${name} (${cases.length} cases): exact (tokenizers.js / sqlora)`);
  for (const [k, [h, o]] of Object.entries(tally)) console.log(`  ${k.padEnd(13)} ${h} / ${o}`);
  for (const f of failures) console.log(`  tokenizers.js differs: ${f}`);
}

exactness('reference strings', hf, ours, expected.strings);
const chats = expected.chat.map((c) => ({
  text: c.rendered,
  ids: c.ids,
  decoded: c.rendered,
  decoded_skip_special: '',
}));
const chatEncode = chats.map((c) => [same(hfIds(hf, c.text), c.ids), same(ours.encode(c.text), c.ids)]);
console.log(
  `rendered chats (${chats.length}): encode exact ${chatEncode.filter((x) => x[0]).length} / ${chatEncode.filter((x) => x[1]).length}`,
);
exactness('added-token variants', hfVariants, oursVariants, expected.added_token_variants);

// Speed: the records of the full Spider prepare.
const out = mkdtempSync(join(tmpdir(), 'sqlora-tokcmp-'));
let t0 = performance.now();
await prepareDataset({
  spider,
  out,
  format: 'schema',
  modelDir: dir,
  trainLimit: 1e9,
  evalLimit: 1e9,
  shuffle: false,
  seed: 42,
  trainSplits: 'spider',
  sampleRows: 0,
  maxPromptTokens: 448,
  quiet: true,
});
console.log(
  `\nprepare (schema, full Spider train + dev, sqlora tokenizer): ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
const records = [
  ...readJsonl<PromptRecord>(join(out, 'train.jsonl')),
  ...readJsonl<PromptRecord>(join(out, 'eval.jsonl')),
];
rmSync(out, { recursive: true, force: true });
const texts = records.flatMap((r) => [r.prompt, r.text]);
const chars = texts.reduce((n, s) => n + s.length, 0);
let mismatched = 0;
for (const s of texts) if (!same(hfIds(hf, s), ours.encode(s))) mismatched++;
console.log(
  `${records.length} records, ${texts.length} strings (${(chars / 1e6).toFixed(1)} M chars); ids differ on ${mismatched}`,
);
const best = { hf: Infinity, ours: Infinity };
let tokens = 0;
for (let r = 0; r < reps; r++) {
  t0 = performance.now();
  tokens = 0;
  for (const s of texts) tokens += ours.encode(s).length;
  best.ours = Math.min(best.ours, performance.now() - t0);
  t0 = performance.now();
  for (const s of texts) hfIds(hf, s);
  best.hf = Math.min(best.hf, performance.now() - t0);
}
for (const [k, ms] of Object.entries(best))
  console.log(
    `  ${k.padEnd(5)} ${(ms / 1000).toFixed(2)} s  ${Math.round(tokens / (ms / 1000)).toLocaleString('en-US')} tokens/s`,
  );
