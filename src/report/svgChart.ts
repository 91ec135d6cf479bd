/**
 * Line charts as standalone SVG text (no script, no external font or stylesheet), so a report
 * can inline them in HTML or write them next to its markdown.
 */

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  color: string;
  /** Draw a dot at every point (sparse series such as eval loss). */
  markers?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  width?: number;
  height?: number;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Round-number ticks covering [min, max]: a step of 1, 2 or 5 times a power of ten. */
export function niceTicks(min: number, max: number, target = 5): number[] {
  if (!(max > min)) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    return niceTicks(min - pad, max + pad, target);
  }
  const rough = (max - min) / target;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const first = Math.floor(min / step + 1e-9) * step;
  const ticks: number[] = [];
  for (let v = first; v <= max + step * (1 - 1e-9); v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks.length >= 2 ? ticks : [first, first + step];
}

/** A tick label: at most 4 significant digits, no trailing zeros, exponent form for tiny/huge values. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e6) return v.toExponential(1).replace('.0e', 'e');
  return String(Number(v.toPrecision(4)));
}

const r1 = (v: number): string => (Math.round(v * 10) / 10).toString();

/** An SVG line chart; null when no series has a point. */
export function lineChart(o: ChartOptions): string | null {
  const series = o.series.filter((s) => s.points.length > 0);
  if (series.length === 0) return null;
  const W = o.width ?? 640;
  const H = o.height ?? 300;
  const m = { left: 60, right: 16, top: 34, bottom: 44 };
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 5);
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
  const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const px = (x: number): number => m.left + ((x - x0) / (x1 - x0)) * (W - m.left - m.right);
  const py = (y: number): number => H - m.bottom - ((y - y0) / (y1 - y0)) * (H - m.top - m.bottom);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeXml(o.title)}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.left}" y="20" font-size="14" font-weight="bold" fill="#222">${escapeXml(o.title)}</text>`,
  ];
  for (const t of yTicks) {
    const y = r1(py(t));
    parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#555">${formatTick(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    const x = r1(px(t));
    parts.push(`<line x1="${x}" x2="${x}" y1="${H - m.bottom}" y2="${H - m.bottom + 4}" stroke="#888"/>`);
    parts.push(`<text x="${x}" y="${H - m.bottom + 17}" text-anchor="middle" fill="#555">${formatTick(t)}</text>`);
  }
  parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${H - m.bottom}" y2="${H - m.bottom}" stroke="#888"/>`);
  parts.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${H - m.bottom}" stroke="#888"/>`);
  parts.push(
    `<text x="${(m.left + W - m.right) / 2}" y="${H - 6}" text-anchor="middle" fill="#333">${escapeXml(o.xLabel)}</text>`,
  );
  const yMid = (m.top + H - m.bottom) / 2;
  parts.push(
    `<text x="14" y="${yMid}" text-anchor="middle" fill="#333" transform="rotate(-90 14 ${yMid})">${escapeXml(o.yLabel)}</text>`,
  );

  for (const s of series) {
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${r1(px(p[0]))} ${r1(py(p[1]))}`).join(' ');
    parts.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round"><title>${escapeXml(s.name)}</title></path>`,
    );
    if (s.markers || s.points.length === 1) {
      for (const p of s.points)
        parts.push(`<circle cx="${r1(px(p[0]))}" cy="${r1(py(p[1]))}" r="3" fill="${s.color}"/>`);
    }
  }
  // Legend, right-aligned above the plot.
  let lx = W - m.right;
  for (const s of [...series].reverse()) {
    const w = 26 + 7 * s.name.length;
    lx -= w;
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="16" y2="16" stroke="${s.color}" stroke-width="2.5"/>`);
    parts.push(`<text x="${lx + 22}" y="16" dominant-baseline="middle" fill="#333">${escapeXml(s.name)}</text>`);
    lx -= 8;
  }
  parts.push('</svg>');
  return parts.join('\n');
}
