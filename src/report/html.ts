/** The report document as one self-contained HTML page: inline CSS and SVG, no script, no external asset. */
import type { Block, Inline } from './document.js';
import { escapeXml } from './svgChart.js';

const CSS = `
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #eee;padding-bottom:.2em}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:#f5f5f5;padding:.1em .3em;border-radius:3px;word-break:break-word}
table{border-collapse:collapse;margin:1em 0;font-size:.93em}th,td{border:1px solid #ddd;padding:.35em .7em;text-align:left;vertical-align:top}
th{background:#f7f7f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37;font-weight:600}.down{color:#cf222e;font-weight:600}.same{color:#777}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.6em 1em;margin:1em 0}
.chart{margin:1em 0}.chart svg{max-width:100%;height:auto;border:1px solid #eee}
.example{border:1px solid #e5e5e5;border-radius:6px;padding:.6em 1em;margin:.8em 0}.example .sub{color:#666}
.example dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.5em 0 0}.example dt{color:#555}.example dd{margin:0}.example dd code{white-space:pre-wrap}
`.trim();

function inlines(parts: Inline[]): string {
  return parts.map((p) => (typeof p === 'string' ? escapeXml(p) : `<code>${escapeXml(p.code)}</code>`)).join('');
}

export function renderHtml(title: string, blocks: readonly Block[]): string {
  const body: string[] = [];
  for (const b of blocks) {
    switch (b.kind) {
      case 'heading':
        body.push(`<h${b.level}>${escapeXml(b.text)}</h${b.level}>`);
        break;
      case 'paragraph':
        body.push(`<p>${inlines(b.inlines)}</p>`);
        break;
      case 'note':
        body.push(`<div class="note">${inlines(b.inlines)}</div>`);
        break;
      case 'table': {
        const head = `<tr>${b.header.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>`;
        const rows = b.rows.map(
          (r) =>
            `<tr>${r
              .map((c, i) => {
                const cls = [b.numeric[i] ? 'num' : '', c.tone ?? ''].filter(Boolean).join(' ');
                const text = c.code ? `<code>${escapeXml(c.text)}</code>` : escapeXml(c.text);
                return `<td${cls ? ` class="${cls}"` : ''}>${text}</td>`;
              })
              .join('')}</tr>`,
        );
        body.push(`<table>\n<thead>${head}</thead>\n<tbody>\n${rows.join('\n')}\n</tbody>\n</table>`);
        break;
      }
      case 'chart':
        body.push(`<div class="chart">\n${b.svg}\n</div>`);
        break;
      case 'example':
        body.push(
          `<div class="example"><strong>${escapeXml(b.title)}</strong>${b.subtitle ? ` <span class="sub">— ${escapeXml(b.subtitle)}</span>` : ''}` +
            `<dl>${b.fields.map(([label, value]) => `<dt>${escapeXml(label)}</dt><dd><code>${escapeXml(value)}</code></dd>`).join('')}</dl></div>`,
        );
        break;
    }
  }
  return (
    [
      '<!DOCTYPE html>',
      '<html lang="en">',
      '<head>',
      '<meta charset="utf-8">',
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      `<title>${escapeXml(title)}</title>`,
      `<style>\n${CSS}\n</style>`,
      '</head>',
      '<body>',
      ...body,
      '</body>',
      '</html>',
    ].join('\n') + '\n'
  );
}
