/**
 * Which dataset a results file scored, as `sqlora prepare` recorded it in dataset.json beside
 * the eval records: its layout (Spider, BIRD, your own pairs) and prompt format. The report names
 * it, and says by which rule execution was scored.
 */
import { dirname } from 'node:path';
import { readDatasetCard } from '../data/records.js';

export interface DatasetInfo {
  layout: string;
  format: string;
  path: string;
}

const NAMES: Record<string, string> = {
  'spider-folder': 'Spider',
  'hf-parquet': 'Spider (Hugging Face parquet)',
  bird: 'BIRD',
  pairs: 'your own question/SQL pairs',
};

/** The dataset card beside an eval file, when there is a readable one. */
export function datasetOf(evalFile: string): DatasetInfo | null {
  try {
    const card = readDatasetCard(dirname(evalFile));
    if (!card || typeof card.format !== 'string' || typeof card.source?.layout !== 'string') return null;
    return { layout: card.source.layout, format: card.format, path: card.source.path ?? '' };
  } catch {
    // The card only names the dataset in the report; a broken one must not stop scoring.
    return null;
  }
}

/** The dataset a results file scored: its meta.dataset, else the card beside its eval file (older results). */
export function resultsDataset(meta: Record<string, unknown> | undefined): DatasetInfo | null {
  const d = meta?.dataset as Partial<DatasetInfo> | null | undefined;
  if (d && typeof d.layout === 'string' && typeof d.format === 'string')
    return { layout: d.layout, format: d.format, path: d.path ?? '' };
  return typeof meta?.eval_file === 'string' ? datasetOf(meta.eval_file) : null;
}

/** "BIRD (/data/bird)" */
export function datasetName(d: DatasetInfo): string {
  return `${NAMES[d.layout] ?? d.layout}${d.path ? ` (${d.path})` : ''}`;
}

/** "BIRD (/data/bird), prompt format schema" */
export function describeDataset(d: DatasetInfo): string {
  return `${datasetName(d)}, prompt format ${d.format}`;
}
