/**
 * The readable dataset card `prepare` writes beside dataset.json: README.md with the Hub's YAML
 * header (license, task, tags), where the data came from, how many records of which hardness,
 * the record format with one example, token length percentiles, and the data's license
 * (Spider: CC BY-SA 4.0, which the derived prompts keep).
 */
import { HARDNESS_LEVELS } from '../eval/hardness.js';
import type { DatasetCard, PromptRecord, SplitCard } from './records.js';

const FORMATS: Record<string, string> = {
  seed: "the reference workflow's prompt: the database name and the question, no schema",
  schema: 'the CREATE TABLE statements of the database (with sample rows if asked) and the question',
};

function row(cells: readonly (string | number)[]): string {
  return `| ${cells.join(' | ')} |`;
}

function countsTable(card: DatasetCard): string[] {
  const splits: [string, SplitCard][] = [
    ['train', card.train],
    ['eval', card.eval],
  ];
  // Spider hardness for Spider, BIRD's difficulty for BIRD, neither for your own pairs.
  const levels = (s: SplitCard): [string, number][] =>
    s.hardness
      ? [...HARDNESS_LEVELS.map((h): [string, number] => [h, s.hardness![h]]), ['unparsed', s.hardness.unparsed]]
      : s.difficulty
        ? Object.entries(s.difficulty)
        : [];
  const names = levels(card.eval.count > 0 ? card.eval : card.train).map(([n]) => n);
  return [
    row(['split', 'records', 'of', ...names, 'schema trimmed', 'over budget']),
    row(Array(names.length + 5).fill('---')),
    ...splits.map(([name, s]) => {
      const byLevel = new Map(levels(s));
      return row([
        name,
        s.count,
        s.available,
        ...names.map((n) => byLevel.get(n) ?? 0),
        s.trimmed.sample_rows + s.trimmed.tables,
        s.over_budget,
      ]);
    }),
  ];
}

function tokensTable(card: DatasetCard): string[] {
  const lines = [row(['split', 'part', 'p50', 'p90', 'p99', 'max']), row(Array(6).fill('---'))];
  for (const [name, s] of [
    ['train', card.train],
    ['eval', card.eval],
  ] as const)
    for (const part of ['prompt', 'text'] as const) {
      const t = s.tokens[part];
      lines.push(row([name, part, t.p50, t.p90, t.p99, t.max]));
    }
  return lines;
}

interface SourceText {
  title: string;
  tag: string;
  origin: string;
  yamlLicense: string;
  license: string[];
}

const SPIDER_LICENSE = [
  'Spider is released under the Creative Commons Attribution-ShareAlike 4.0 license',
  '([CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/)); these prompts are derived from it',
  'and are shared under the same license. Cite: Tao Yu et al., "Spider: A Large-Scale Human-Labeled',
  'Dataset for Complex and Cross-Domain Semantic Parsing and Text-to-SQL Task", EMNLP 2018.',
];

function sourceText(layout: DatasetCard['source']['layout']): SourceText {
  switch (layout) {
    case 'bird':
      return {
        title: 'BIRD',
        tag: 'bird',
        origin: 'BIRD (Li et al., 2023), read from the release layout',
        yamlLicense: 'cc-by-sa-4.0',
        license: [
          'BIRD is released under the Creative Commons Attribution-ShareAlike 4.0 license',
          '([CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/)); these prompts are derived from it',
          'and are shared under the same license. Cite: Jinyang Li et al., "Can LLM Already Serve as A Database',
          'Interface? A BIg Bench for Large-Scale Database Grounded Text-to-SQLs", NeurIPS 2023.',
        ],
      };
    case 'pairs':
      return {
        title: 'Question/SQL pairs',
        tag: 'custom',
        origin: 'your own question/SQL pairs',
        yamlLicense: 'other',
        license: [
          'These prompts are derived from your own question/SQL pairs and databases: state their license here',
          '(and in the `license:` line above) before you share them.',
        ],
      };
    case 'hf-parquet':
      return {
        title: 'Spider',
        tag: 'spider',
        origin: 'Spider (Yu et al., 2018), read from xlangai/spider parquet files',
        yamlLicense: 'cc-by-sa-4.0',
        license: SPIDER_LICENSE,
      };
    default:
      return {
        title: 'Spider',
        tag: 'spider',
        origin: 'Spider (Yu et al., 2018), read from the official Spider folder layout',
        yamlLicense: 'cc-by-sa-4.0',
        license: SPIDER_LICENSE,
      };
  }
}

/** README.md for a prepared dataset; `example` is shown as the format's illustration. */
export function datasetReadme(card: DatasetCard, example: PromptRecord | undefined): string {
  const src = sourceText(card.source.layout);
  return [
    '---',
    `license: ${src.yamlLicense}`,
    'language:',
    '- en',
    'task_categories:',
    '- text-generation',
    'tags:',
    '- text-to-sql',
    `- ${src.tag}`,
    '- sqlora',
    '---',
    '',
    `# ${src.title} Text-to-SQL prompts (${card.format} format)`,
    '',
    'Prepared by `sqlora prepare` for supervised fine-tuning and evaluation: each record is a chat',
    "(system, user, assistant) rendered with the model's chat template; the answer is the gold SQL.",
    '',
    '## Source',
    '',
    `- ${src.origin}: \`${card.source.path}\``,
    `- train: ${card.source.train_files.map((f) => `\`${f}\``).join(', ')}`,
    `- eval: ${card.source.eval_files.map((f) => `\`${f}\``).join(', ')}`,
    `- databases: \`${card.source.databases}\``,
    `- selection: ${card.selection}`,
    `- tokenizer and chat template: \`${card.model.dir}\``,
    '',
    '## Counts',
    '',
    'Records per split, by Spider hardness or BIRD difficulty where the source has them ("of": examples the',
    'source split held; "unparsed": gold SQL that Spider\'s parser rejects; "schema trimmed": prompts that lost',
    'sample rows or tables to fit the token budget; "over budget": still over it).',
    '',
    ...countsTable(card),
    '',
    '## Format',
    '',
    `Prompt format \`${card.format}\` (${FORMATS[card.format] ?? card.format}); token budget`,
    `${card.options.max_prompt_tokens}${card.options.sample_rows ? `, ${card.options.sample_rows} sample rows per table` : ''}.`,
    '',
    '`train.jsonl` and `eval.jsonl` hold one JSON record a line: `id` (`train-12`, `dev-0`: the index in the',
    'source file), `db_id`, `question`, `query` (gold SQL), `hardness`, `messages`, `text` (the whole chat',
    'as the model sees it) and `prompt` (`text` up to the answer). `dataset.json` has the same figures',
    'as this card, for programs.',
    ...(example ? ['', `One record (\`${example.id}\`):`, '', '```json', JSON.stringify(example, null, 2), '```'] : []),
    '',
    "## Token lengths (the model's tokenizer)",
    '',
    ...tokensTable(card),
    '',
    '## License',
    '',
    ...src.license,
    '',
  ].join('\n');
}
