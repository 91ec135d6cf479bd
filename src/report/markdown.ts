/** The report document as GitHub-flavoured markdown; charts are linked as SVG files beside it. */
import type { Block, Cell, Inline } from './document.js';

/** Inline code that survives backticks inside it: a fence longer than any run within. */
export function mdCode(s: string): string {
  const longest = Math.max(0, ...(s.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = s.startsWith('`') || s.endsWith('`') || longest > 0 ? ' ' : '';
  return `${fence}${pad}${s}${pad}${fence}`;
}

/**
 * Plain text with markdown's active characters escaped; an underscore inside a word
 * (`department_management`) stays as it is, since GFM never reads it as emphasis.
 */
export function mdText(s: string): string {
  return s.replace(/[\\`*[\]<|]|(?<!\w)_|_(?!\w)/g, (c) => '\\' + c);
}

/** A fenced code block indented under a list item: multi-line SQL keeps its lines. */
function mdIndentedBlock(s: string): string {
  const fence = '`'.repeat(Math.max(3, ...(s.match(/`+/g) ?? []).map((r) => r.length + 1)));
  return ['', fence, ...s.split(/\r?\n/), fence].map((l) => (l === '' ? '' : `  ${l}`)).join('\n');
}

function inlines(parts: Inline[]): string {
  return parts.map((p) => (typeof p === 'string' ? mdText(p) : mdCode(p.code))).join('');
}

function tableCell(c: Cell): string {
  // A table cell ends at a pipe or a newline, even inside code.
  const text = c.text.replace(/\s*\n\s*/g, ' ');
  return (c.code ? mdCode(text) : mdText(text)).replace(/(?<!\\)\|/g, '\\|');
}

export function renderMarkdown(blocks: readonly Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    switch (b.kind) {
      case 'heading':
        out.push(`${'#'.repeat(b.level)} ${mdText(b.text)}`);
        break;
      case 'paragraph':
        out.push(inlines(b.inlines));
        break;
      case 'note':
        out.push(`> ${inlines(b.inlines)}`);
        break;
      case 'table':
        out.push(
          [
            `| ${b.header.map(mdText).join(' | ')} |`,
            `|${b.numeric.map((n) => (n ? ' ---: ' : ' --- ')).join('|')}|`,
            ...b.rows.map((r) => `| ${r.map(tableCell).join(' | ')} |`),
          ].join('\n'),
        );
        break;
      case 'chart':
        out.push(`![${mdText(b.alt)}](${b.file})`);
        break;
      case 'example':
        out.push(
          [
            `**${mdText(b.title)}**${b.subtitle ? ` — ${mdText(b.subtitle)}` : ''}`,
            '',
            ...b.fields.map(
              ([label, value]) =>
                `- ${mdText(label)}:${value.includes('\n') ? mdIndentedBlock(value) : ` ${mdCode(value)}`}`,
            ),
          ].join('\n'),
        );
        break;
    }
  }
  return out.join('\n\n') + '\n';
}
