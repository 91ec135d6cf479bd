/**
 * The report as a small document model (headings, paragraphs, tables, charts, examples) that
 * markdown.ts and html.ts render: the content is decided once, in report.ts.
 */

/** Inline text: plain, or code (paths, SQL). */
export type Inline = string | { code: string };

export type Tone = 'up' | 'down' | 'same';

export interface Cell {
  text: string;
  code?: boolean;
  /** Colours a change: up = better. */
  tone?: Tone;
}

export type Block =
  | { kind: 'heading'; level: 1 | 2 | 3; text: string }
  | { kind: 'paragraph'; inlines: Inline[] }
  | { kind: 'note'; inlines: Inline[] }
  | { kind: 'table'; header: string[]; rows: Cell[][]; numeric: boolean[] }
  /** An SVG chart: inlined in HTML, written to `file` and linked from markdown. */
  | { kind: 'chart'; file: string; alt: string; svg: string }
  | { kind: 'example'; title: string; subtitle?: string; fields: [string, string][] };

export function cell(text: string | number, extra: Omit<Cell, 'text'> = {}): Cell {
  return { text: String(text), ...extra };
}
