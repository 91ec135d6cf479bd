/**
 * The dataset a published adapter's card names: Spider, BIRD or your own question/SQL pairs, from
 * the run's dataset.json (beside training_summary.json's data.train_file) and the eval results'
 * meta.dataset. Spider's wording is the card's historical text; BIRD has no Hub dataset id we
 * could confirm, so its card has no `datasets` entry; your own pairs have none either.
 */
import type { MetricName } from '../report/compare.js';
import { datasetOf, resultsDataset, type DatasetInfo } from '../report/dataset.js';
import type { ResultsFile, TrainingRun } from '../report/inputs.js';

export interface CardDataset {
  /** The Hub dataset id for `datasets:` and the model-index, when there is one. */
  hubId: string | null;
  /** The model-index's dataset type (the Hub id where there is one). */
  indexType: string;
  tag: string | null;
  /** The intro's "fine-tuned ... on" phrase, with and without the example count. */
  trainedOn: (examples: string | undefined) => string;
  /** The training table's Data row, "48 Spider train examples". */
  trainExamples: (examples: string) => string;
  /** "Spider dev": the evaluation set, in the model-index and the body. */
  evalName: string;
  /** "8 Spider dev questions". */
  evalQuestions: (count: string) => string;
  /** The Results heading sentence, before the comparison note. */
  resultsLead: (count: number) => string;
  /** Which metrics the card shows when the results were scored on databases. */
  metrics: readonly MetricName[];
  /** The Results footnote for those metrics. */
  metricNote: string;
  /** Whether per-level rows (Spider hardness, BIRD difficulty) are shown. */
  levels: boolean;
  /** The first line of Limitations. */
  scope: string;
  /** "databases unlike Spider's" */
  unlike: string;
  /** The usage section's `sqlora eval` line: its comment and its database flags. */
  evalUsage: { comment: string; flags: string };
}

const SPIDER_ID = 'xlangai/spider';

export const SPIDER: CardDataset = {
  hubId: SPIDER_ID,
  indexType: SPIDER_ID,
  tag: 'spider',
  trainedOn: (n) =>
    n !== undefined
      ? ` on ${n} question-SQL pairs from the [Spider](https://huggingface.co/datasets/${SPIDER_ID}) training set`
      : ' on Spider',
  trainExamples: (n) => `${n} Spider train examples`,
  evalName: 'Spider dev',
  evalQuestions: (n) => `${n} Spider dev questions`,
  resultsLead: (n) => `Spider dev (${n} questions), by Spider's hardness levels`,
  metrics: ['execution', 'exact_set_match'],
  metricNote:
    "Execution accuracy: the predicted query returns the same rows as the gold query on the database (as Spider's official script computes it). Exact-set-match: Spider's official component-by-component comparison of the two queries (values ignored).",
  levels: true,
  scope:
    'Trained and evaluated on Spider: English questions, SQLite, databases of a few tables. Other SQL dialects, large schemas and other languages were not measured.',
  unlike: "databases unlike Spider's",
  evalUsage: {
    comment: '# the Spider dev score, as in Results (prompts from sqlora prepare, in the format above)',
    flags: ' --spider spider',
  },
};

const BIRD: CardDataset = {
  hubId: null,
  indexType: 'bird',
  tag: 'bird',
  trainedOn: (n) =>
    n !== undefined
      ? ` on ${n} question-SQL pairs from the [BIRD](https://bird-bench.github.io/) training set`
      : ' on BIRD',
  trainExamples: (n) => `${n} BIRD train examples`,
  evalName: 'BIRD dev',
  evalQuestions: (n) => `${n} BIRD dev questions`,
  resultsLead: (n) => `BIRD dev (${n} questions), by BIRD's difficulty levels`,
  metrics: ['execution'],
  metricNote:
    "Execution accuracy: the predicted query returns the same set of rows as the gold query on the database, as BIRD's own evaluation computes it.",
  levels: true,
  scope:
    'Trained and evaluated on BIRD: English questions with their evidence hints, SQLite databases. Other SQL dialects and other languages were not measured.',
  unlike: "databases unlike BIRD's",
  evalUsage: {
    comment: '# the BIRD dev score, as in Results (prompts from sqlora prepare --bird, in the format above)',
    flags: ' --db-dir bird/dev/dev_databases',
  },
};

const OWN = 'your own question/SQL pairs';

const PAIRS: CardDataset = {
  hubId: null,
  indexType: 'own-pairs',
  tag: null,
  trainedOn: (n) => (n !== undefined ? ` on ${n} examples of ${OWN}` : ` on ${OWN}`),
  trainExamples: (n) => `${n} train examples of ${OWN}`,
  evalName: `the evaluation split of ${OWN}`,
  evalQuestions: (n) => `${n} evaluation questions of ${OWN}`,
  resultsLead: (n) => `The evaluation split of ${OWN} (${n} questions)`,
  metrics: ['execution'],
  metricNote: 'Execution accuracy: the predicted query returns the same rows as the gold query on its database.',
  levels: false,
  scope: `Trained and evaluated on ${OWN}: its scores hold for those databases and questions only.`,
  unlike: 'other databases',
  // The records of prepare --pairs name their database files.
  evalUsage: {
    comment:
      '# the score on your evaluation pairs, as in Results (prompts from sqlora prepare --pairs, in the format above)',
    flags: '',
  },
};

export function cardDataset(d: DatasetInfo | null): CardDataset {
  if (d?.layout === 'bird') return BIRD;
  if (d?.layout === 'pairs') return PAIRS;
  return SPIDER;
}

/** The datasets of the card: what the run trained on, and what the results scored (each falling back on the other). */
export function cardDatasets(
  run: TrainingRun,
  finetuned: ResultsFile | null,
): { train: CardDataset; eval: CardDataset } {
  const trainFile = run.summary?.data?.train_file;
  const train = typeof trainFile === 'string' ? datasetOf(trainFile) : null;
  const scored = finetuned ? resultsDataset(finetuned.meta) : null;
  return { train: cardDataset(train ?? scored), eval: cardDataset(scored ?? train) };
}
