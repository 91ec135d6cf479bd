import { cpSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sqlora } from './helpers/cli.js';

const FIX = 'test/fixtures/report';

describe('sqlora report', () => {
  it('writes report.md, report.html and the charts into the run folder by default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-report-cli-'));
    cpSync(join(FIX, 'run'), join(dir, 'run'), { recursive: true });
    const r = await sqlora('report', [
      '--run',
      join(dir, 'run'),
      '--baseline',
      join(FIX, 'baseline_results.json'),
      '--finetuned',
      join(FIX, 'finetuned_results.json'),
      '--note',
      'CLI test',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `wrote ${join(dir, 'run', 'report.html')} and ${join(dir, 'run', 'report.md')} (+ 2 charts)\n`,
    );
    for (const f of ['loss.svg', 'lr.svg']) expect(existsSync(join(dir, 'run', f))).toBe(true);
    const md = readFileSync(join(dir, 'run', 'report.md'), 'utf8');
    expect(md).toContain('> CLI test');
    expect(md).toContain('| overall | 8 | Execution accuracy | 25.00 | 50.00 | +25.00 |');
  });

  it('needs something to report on', async () => {
    const r = await sqlora('report', []);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('give --run DIR and/or --baseline FILE / --finetuned FILE');
  });

  it('names the command that scores a reference-workflow results file', async () => {
    const r = await sqlora('report', [
      '--finetuned',
      'test/fixtures/seed/finetuned_results.json',
      '--out',
      mkdtempSync(join(tmpdir(), 'sqlora-report-cli-')),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'score it first: sqlora evaluate --pred test/fixtures/seed/finetuned_results.json --out results.json',
    );
  });
});
