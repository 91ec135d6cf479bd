/**
 * The report's MMLU section (`sqlora report --mmlu results.json`): accuracy overall and per
 * category before and after the adapter, the verdict line, and a grouped bar chart.
 */
import type { AccuracyEntry, MmluResults } from '../eval/mmluSummary.js';
import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';
import { cell, type Block, type Cell } from './document.js';
import { escapeXml } from './svgChart.js';

export interface MmluReportInput {
  path: string;
  results: MmluResults;
}

const CATEGORY_NAMES: Record<string, string> = {
  stem: 'STEM',
  humanities: 'Humanities',
  social_sciences: 'Social sciences',
  other: 'Other',
};

/** Reads results.json from sqlora mmlu, checking the parts the report uses. */
export function readMmluResults(path: string): MmluReportInput {
  const raw = readJsonFile<Partial<MmluResults>>(path, 'MMLU results');
  const s = raw?.summary;
  const ok = (e: unknown): e is AccuracyEntry =>
    typeof e === 'object' &&
    e !== null &&
    typeof (e as AccuracyEntry).questions === 'number' &&
    typeof (e as AccuracyEntry).base?.accuracy === 'number';
  if (!s || !ok(s.overall) || typeof s.categories !== 'object' || !Object.values(s.categories).every(ok)) {
    throw new UserError(`${path}: not a results file of sqlora mmlu (expected summary.overall and summary.categories)`);
  }
  return { path, results: raw as MmluResults };
}

const pct = (a: { accuracy: number } | undefined): string => (a ? (100 * a.accuracy).toFixed(2) : '—');

function delta(e: AccuracyEntry): Cell {
  if (!e.adapter) return cell('—');
  const d = 100 * (e.adapter.accuracy - e.base.accuracy);
  return cell(`${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}`, {
    tone: d > 0.005 ? 'up' : d < -0.005 ? 'down' : 'same',
  });
}

/** Grouped bars: per category (and overall) the base's and the adapter's accuracy, 0-100%. */
export function accuracyBars(groups: { name: string; values: number[] }[], series: string[], title: string): string {
  const colors = ['#1f77b4', '#ff7f0e'];
  const W = 640,
    H = 280;
  const m = { left: 48, right: 16, top: 40, bottom: 40 };
  const plotH = H - m.top - m.bottom;
  const groupW = (W - m.left - m.right) / groups.length;
  const barW = Math.min(48, (groupW * 0.7) / series.length);
  const y = (v: number): number => m.top + plotH * (1 - v / 100);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeXml(title)}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.left}" y="20" font-size="14" font-weight="bold" fill="#222">${escapeXml(title)}</text>`,
  ];
  for (const t of [0, 25, 50, 75, 100]) {
    parts.push(
      `<line x1="${m.left}" x2="${W - m.right}" y1="${y(t)}" y2="${y(t)}" stroke="${t === 25 ? '#bbb' : '#e5e5e5'}"${t === 25 ? ' stroke-dasharray="4 3"' : ''}/>`,
    );
    parts.push(
      `<text x="${m.left - 6}" y="${y(t)}" text-anchor="end" dominant-baseline="middle" fill="#555">${t}%</text>`,
    );
  }
  groups.forEach((g, gi) => {
    const x0 = m.left + gi * groupW + (groupW - barW * series.length) / 2;
    g.values.forEach((v, si) => {
      const x = x0 + si * barW;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(y(0) - y(v)).toFixed(1)}" fill="${colors[si]}"><title>${escapeXml(`${g.name}, ${series[si]}: ${v.toFixed(2)}%`)}</title></rect>`,
      );
    });
    parts.push(
      `<text x="${(m.left + (gi + 0.5) * groupW).toFixed(1)}" y="${H - m.bottom + 17}" text-anchor="middle" fill="#333">${escapeXml(g.name)}</text>`,
    );
  });
  parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y(0)}" y2="${y(0)}" stroke="#888"/>`);
  let lx = W - m.right;
  for (let si = series.length - 1; si >= 0; si--) {
    lx -= 26 + 7 * series[si].length;
    parts.push(`<rect x="${lx}" y="10" width="14" height="12" fill="${colors[si]}"/>`);
    parts.push(`<text x="${lx + 18}" y="16" dominant-baseline="middle" fill="#333">${escapeXml(series[si])}</text>`);
    lx -= 8;
  }
  parts.push(`<text x="${W - m.right}" y="${H - 6}" text-anchor="end" fill="#777">dashed: chance (25%)</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

export function mmluSection(inp: MmluReportInput): Block[] {
  const { results: r, path } = inp;
  const s = r.summary;
  const adapter = s.overall.adapter !== undefined;
  const blocks: Block[] = [{ kind: 'heading', level: 2, text: 'General knowledge (MMLU)' }];
  blocks.push({
    kind: 'paragraph',
    inlines: [
      `MMLU ${r.meta?.shots ?? 0}-shot accuracy (lm-evaluation-harness's prompts and scoring) on ${r.meta?.data ?? 'an MMLU set'}, from `,
      { code: path },
      `. ${adapter ? 'Base model and adapter on the same questions; the change is in percentage points.' : 'Base model only.'}`,
    ],
  });
  const entries: [string, AccuracyEntry][] = [
    ...Object.entries(s.categories).map(([c, e]): [string, AccuracyEntry] => [CATEGORY_NAMES[c] ?? c, e]),
    ['Overall', s.overall],
  ];
  const header = ['Category', 'Questions', 'Base %', ...(adapter ? ['Adapter %', 'Change'] : [])];
  blocks.push({
    kind: 'table',
    header,
    rows: entries.map(([name, e]) => [
      cell(name),
      cell(e.questions),
      cell(pct(e.base)),
      ...(adapter ? [cell(pct(e.adapter)), delta(e)] : []),
    ]),
    numeric: header.map((h) => h !== 'Category'),
  });
  if (s.verdict) blocks.push({ kind: 'note', inlines: [`Verdict: ${s.verdict.line}.`] });
  blocks.push({ kind: 'paragraph', inlines: [`Note: ${s.power}.`] });
  const series = adapter ? ['base', 'adapter'] : ['base'];
  blocks.push({
    kind: 'chart',
    file: 'mmlu.svg',
    alt: 'MMLU accuracy per category, before and after',
    svg: accuracyBars(
      entries.map(([name, e]) => ({
        name,
        values: [100 * e.base.accuracy, ...(adapter && e.adapter ? [100 * e.adapter.accuracy] : [])],
      })),
      series,
      'MMLU accuracy by category',
    ),
  });
  return blocks;
}
