/**
 * A one-line progress bar on stderr: done/total, rate, ETA and free-form fields (loss, lr...).
 * Redraws at most every 100 ms; on a non-TTY stderr it prints a line every few seconds instead.
 * Rates are items done over the time since the bar was made: make it when the work starts.
 */
export interface ProgressOptions {
  label: string;
  total: number;
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Silence output entirely (e.g. --json mode). */
  quiet?: boolean;
}

export class Progress {
  private readonly start = Date.now();
  // A log (non-TTY) gets its first line after the first interval, not at the first item.
  private lastDraw = this.start;
  private onLine = false;
  private done = 0;
  private fields: Record<string, string> = {};
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;

  constructor(
    private readonly opts: ProgressOptions,
    private readonly startAt = 0,
  ) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
    this.done = startAt;
  }

  tick(n = 1, fields?: Record<string, string | number>): void {
    this.done += n;
    if (fields) this.set(fields);
    this.draw(false);
  }

  set(fields: Record<string, string | number>): void {
    for (const [k, v] of Object.entries(fields)) this.fields[k] = typeof v === 'number' ? formatNumber(v) : v;
  }

  finish(): void {
    this.draw(true);
    this.breakLine();
  }

  /** Ends the bar's terminal line so other output (another bar) starts on its own; the next draw starts a new line. */
  breakLine(): void {
    if (!this.opts.quiet && this.tty && this.onLine) this.stream.write('\n');
    this.onLine = false;
  }

  line(): string {
    const elapsed = (Date.now() - this.start) / 1000;
    const fresh = this.done - this.startAt;
    const rate = elapsed > 0 ? fresh / elapsed : 0;
    const left = this.opts.total - this.done;
    const eta = rate > 0 ? left / rate : NaN;
    const pct = this.opts.total > 0 ? Math.floor((100 * this.done) / this.opts.total) : 100;
    const width = 20;
    const filled = Math.min(width, Math.round((width * pct) / 100));
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const extra = Object.entries(this.fields)
      .map(([k, v]) => `${k} ${v}`)
      .join('  ');
    const unit = this.opts.unit ?? 'it';
    return `${this.opts.label} [${bar}] ${this.done}/${this.opts.total} ${formatNumber(rate)} ${unit}/s ETA ${formatDuration(eta)}${extra ? '  ' + extra : ''}`;
  }

  private draw(force: boolean): void {
    if (this.opts.quiet) return;
    const now = Date.now();
    const every = this.tty ? 100 : 5000;
    if (!force && now - this.lastDraw < every) return;
    this.lastDraw = now;
    if (this.tty) {
      this.stream.write('\r\x1b[2K' + this.line());
      this.onLine = true;
    } else this.stream.write(this.line() + '\n');
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(sec).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  if (a >= 100) return v.toFixed(0);
  return v.toFixed(a >= 10 ? 1 : 3);
}
