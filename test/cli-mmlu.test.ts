import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { MmluResults } from '../src/eval/mmluSummary.js';
import { sqlora } from './helpers/cli.js';

const FIX = join(import.meta.dirname, 'fixtures', 'mmlu');
const MODEL = join(FIX, 'model-letters');
const BASE_ARGS = ['--model', MODEL, '--device', 'cpu', '--quantize', 'none'];

function temp(): string {
  return mkdtempSync(join(tmpdir(), 'cli-mmlu-'));
}

describe('sqlora mmlu', () => {
  it('scores base and adapter, writes the results file and prints the same JSON with --json', async () => {
    const out = join(temp(), 'results.json');
    const args = [
      ...BASE_ARGS,
      '--adapter',
      join(FIX, 'adapter'),
      '--data',
      join(FIX, 'csv'),
      '--subjects',
      'marketing,anatomy,world_religions',
      '--limit',
      '8',
      '--out',
      out,
    ];
    const r = await sqlora('mmlu', [...args, '--json']);
    expect(r.stderr).not.toContain('error');
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout) as MmluResults;
    const written = JSON.parse(readFileSync(out, 'utf8')) as MmluResults;
    expect(printed.questions).toEqual(written.questions);
    expect(printed.summary).toEqual(written.summary);
    expect(written.meta.data).toContain('original CSV layout');
    expect(written.meta.single_token_questions).toBe(24);
    // Subjects by name, then file order.
    expect(written.questions.map((q) => `${q.subject}/${q.index}`).slice(0, 9)).toEqual([
      ...Array.from({ length: 8 }, (_, i) => `anatomy/${i}`),
      'marketing/0',
    ]);
    const q = written.questions[0];
    expect(Object.keys(q).sort()).toEqual(['adapter', 'answer', 'base', 'index', 'subject']);
    expect(q.base.loglik).toHaveLength(4);
    expect(q.base.pred).toBe(q.base.loglik.indexOf(Math.max(...q.base.loglik)));
    // The summary counts what the questions say.
    const s = written.summary;
    const right = (w: 'base' | 'adapter', subject?: string): number =>
      written.questions.filter((x) => (!subject || x.subject === subject) && x[w]!.pred === x.answer).length;
    expect(s.overall.questions).toBe(24);
    expect(s.overall.base).toEqual({ correct: right('base'), accuracy: right('base') / 24 });
    expect(s.overall.adapter).toEqual({ correct: right('adapter'), accuracy: right('adapter') / 24 });
    expect(s.subjects.marketing).toMatchObject({
      category: 'other',
      questions: 8,
      base: { correct: right('base', 'marketing') },
    });
    expect(Object.keys(s.categories)).toEqual(['stem', 'humanities', 'other']);
    expect(s.categories.humanities.base.correct).toBe(right('base', 'world_religions'));
    expect(s.verdict!.questions).toBe(24);
    expect(s.verdict!.line).toMatch(/^(no significant change|significant (drop|gain) of [\d.]+ points): /);
    expect(s.power).toContain('needs about 318 questions');

    const human = await sqlora('mmlu', args);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('MMLU 0-shot on the original CSV layout');
    expect(human.stdout).toContain(`verdict: ${s.verdict!.line}`);
    expect(human.stdout).toMatch(/overall\s+24\s+[\d.]+%\s+[\d.]+%/);
  }, 60_000);

  it('continues an interrupted run from its progress file and gets the same results', async () => {
    const dir = temp();
    const out = join(dir, 'r.json');
    const args = [
      ...BASE_ARGS,
      '--data',
      join(FIX, 'csv'),
      '--limit',
      '4',
      '--out',
      out,
      '--json',
      '--batch-size',
      '2',
    ];
    const full = JSON.parse((await sqlora('mmlu', args)).stdout) as MmluResults;
    const progress = `${out}.progress.jsonl`;
    const lines = readFileSync(progress, 'utf8').split('\n');
    expect(lines.length).toBe(1 + 20 + 1);
    // As if stopped after 7 questions, the last line half written.
    writeFileSync(progress, lines.slice(0, 8).join('\n') + '\n' + lines[8].slice(0, 15));
    const again = JSON.parse((await sqlora('mmlu', args)).stdout) as MmluResults;
    expect(again.meta.single_token_questions).toBe(13);
    expect(again.meta.resumed_questions).toBe(7);
    expect(again.questions).toEqual(full.questions);
    // Other settings start over.
    const other = JSON.parse((await sqlora('mmlu', [...args, '--limit', '3'])).stdout) as MmluResults;
    expect(other.meta.single_token_questions).toBe(15);
  }, 60_000);

  it('keeps what was scored when stopped with Ctrl-C', async () => {
    const out = join(temp(), 'r.json');
    const args = [...BASE_ARGS, '--data', join(FIX, 'csv'), '--shots', '5', '--batch-size', '1', '--out', out];
    const progress = `${out}.progress.jsonl`;
    const r = await sqlora('mmlu', args, {
      onSpawn(child) {
        const timer = setInterval(() => {
          if (existsSync(progress) && readFileSync(progress, 'utf8').split('\n').length >= 5) {
            clearInterval(timer);
            child.kill('SIGINT');
          }
        }, 50);
      },
    });
    expect(r.code !== 0 || r.signal === 'SIGINT').toBe(true);
    expect(existsSync(out)).toBe(false);
    const kept = readFileSync(progress, 'utf8').trim().split('\n').length - 1;
    expect(kept).toBeGreaterThanOrEqual(3);
    expect(kept).toBeLessThan(250);
  }, 60_000);

  it('runs on the embedded selection without --data and says so', async () => {
    const subjects = 'anatomy,high_school_geography,marketing,world_religions';
    const r = await sqlora('mmlu', [
      ...BASE_ARGS,
      '--subjects',
      subjects,
      '--limit',
      '1',
      '--out',
      join(temp(), 'r.json'),
      '--json',
    ]);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as MmluResults;
    expect(res.meta.data).toContain('the embedded selection (1140 test questions, 57 subjects');
    expect(res.questions.map((q) => q.subject)).toEqual(subjects.split(','));
    expect(Object.keys(res.summary.categories)).toEqual(['stem', 'humanities', 'social_sciences', 'other']);
  }, 60_000);

  describe('bad input: one line, non-zero exit', () => {
    const bad = async (extra: string[]): Promise<string> => {
      const r = await sqlora('mmlu', [...BASE_ARGS, '--out', join(temp(), 'r.json'), ...extra]);
      expect(r.code).toBe(1);
      expect(
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('error: ')),
      ).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      return r.stderr;
    };

    it('an unknown --subjects entry', async () => {
      expect(await bad(['--data', join(FIX, 'csv'), '--subjects', 'anatomy,astrology'])).toContain(
        'error: --subjects: unknown subject "astrology"',
      );
    });

    it('an answer letter outside A-D, with file and line', async () => {
      const dir = temp();
      mkdirSync(join(dir, 'test'));
      writeFileSync(join(dir, 'test', 'virology_test.csv'), 'Q?,a,b,c,d,B\n"Q2?",a,b,c,d,F\n');
      expect(await bad(['--data', dir])).toContain(`error: ${join(dir, 'test', 'virology_test.csv')}:2: answer "F"`);
    });

    it('5-shot for a subject with fewer than 5 dev questions', async () => {
      const dir = temp();
      mkdirSync(join(dir, 'test'));
      mkdirSync(join(dir, 'dev'));
      writeFileSync(join(dir, 'test', 'virology_test.csv'), 'Q?,a,b,c,d,B\n');
      writeFileSync(join(dir, 'dev', 'virology_dev.csv'), 'D?,a,b,c,d,B\n');
      expect(await bad(['--data', dir, '--shots', '5'])).toContain(
        'error: subject virology has 1 dev question; --shots 5 needs 5',
      );
    });

    it('--shots other than 0 or 5', async () => {
      expect(await bad(['--shots', '3'])).toContain('error: sqlora mmlu: --shots must be 0 or 5, got 3');
    });
  });
});
