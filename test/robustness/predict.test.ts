/**
 * `sqlora baseline` / `sqlora eval` against a careful tester: a busy output folder, a failed start
 * followed by the corrected rerun, an output path that is a folder, and Ctrl-C mid-generation.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireRunLock } from '../../src/util/runLock.js';
import { sqlora } from '../helpers/cli.js';
import { writeRecords, writeTinyChatModel, type SpiderQuestion } from '../helpers/tiny-chat-model.js';
import { expectRefused, snapshot, waitFor } from './helpers.js';

let tmp: string;
let model: string;
let data: string;
const COUNT = 3;

const flags = (out: string, ...extra: string[]): string[] => [
  ...['--model', model, '--data', data, '--out', out, '--quantize', 'none', '--device', 'cpu'],
  ...['--max-new-tokens', '8', '--workers', '1', '--spider', 'test/fixtures/spider'],
  ...extra,
];
const lines = (path: string): string[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
    : [];

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-robust-predict-'));
  model = writeTinyChatModel(join(tmp, 'model')).dir;
  data = join(tmp, 'data');
  mkdirSync(data);
  const dev = JSON.parse(readFileSync('test/fixtures/spider/dev.json', 'utf8')) as SpiderQuestion[];
  writeRecords(join(data, 'eval.jsonl'), model, 'dev', dev.slice(0, COUNT));
  writeRecords(join(data, 'many.jsonl'), model, 'dev', dev.slice(0, 60));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('baseline / eval output folders', () => {
  it('a folder in use by a live run is refused, untouched; free again once it is released', async () => {
    const out = join(tmp, 'busy');
    const lock = acquireRunLock(out, 'baseline');
    writeFileSync(join(out, 'predictions.jsonl'), '');
    const before = snapshot(out);
    try {
      expectRefused(
        await sqlora('baseline', flags(out)),
        new RegExp(
          `busy is in use by another run \\(sqlora baseline, pid ${process.pid}, since .*\\): wait for it to finish, or choose another --out`,
        ),
      );
      expect(snapshot(out)).toEqual(before);
    } finally {
      lock.release();
    }
    const r = await sqlora('baseline', flags(out));
    expect(r.code, r.stderr).toBe(0);
    expect(lines(join(out, 'predictions.jsonl'))).toHaveLength(COUNT);
    expect(existsSync(join(out, '.sqlora.lock'))).toBe(false);
  }, 60_000);

  it('a failed start records no settings: the corrected rerun is accepted', async () => {
    const out = join(tmp, 'failed-start');
    expectRefused(await sqlora('baseline', flags(out, '--model', join(tmp, 'no-such-model'))), /no-such-model/);
    expect(existsSync(join(out, 'run.json'))).toBe(false);
    expect(existsSync(join(out, 'predictions.jsonl'))).toBe(false);
    // A run.json left by an older version beside no predictions does not block either.
    writeFileSync(join(out, 'run.json'), JSON.stringify({ mode: 'baseline', model: 'elsewhere' }));
    const r = await sqlora('baseline', flags(out));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).model).toBe(model);
  }, 60_000);

  it('an output that is a folder is refused before the model loads', async () => {
    const out = join(tmp, 'results-dir');
    mkdirSync(join(out, 'results.json'), { recursive: true });
    const r = await sqlora('baseline', flags(out));
    expectRefused(r, /output \S+results\.json is a folder; give a file name/);
    expect(r.stderr).not.toMatch(/loading|loaded/i);
    expect(existsSync(join(out, 'predictions.jsonl'))).toBe(false);
  }, 30_000);

  it('Ctrl-C mid-generation: says how many predictions are kept and how to continue; exit 130; the rerun completes', async () => {
    const out = join(tmp, 'interrupted');
    const predPath = join(out, 'predictions.jsonl');
    const args = flags(out, '--eval-file', join(data, 'many.jsonl'), '--batch-size', '1', '--max-new-tokens', '64');
    const r = await sqlora('baseline', args, {
      onSpawn(child) {
        void waitFor(() => lines(predPath).length >= 2, 30_000, 'two predictions').then(() => child.kill('SIGINT'));
      },
    });
    expect(r.code, r.stderr).toBe(130);
    const m =
      /stopped \(Ctrl-C\): (\d+) of 60 predictions are kept in (\S+); run the same command again to continue from there\n$/.exec(
        r.stderr,
      );
    expect(m, r.stderr).not.toBeNull();
    expect(m![2]).toBe(predPath);
    const kept = lines(predPath);
    expect(kept.length).toBe(Number(m![1]));
    expect(existsSync(join(out, '.sqlora.lock'))).toBe(false);
    const again = await sqlora('baseline', [...args, '--limit', '3']);
    expect(again.code, again.stderr).toBe(0);
    // The kept lines are untouched; only the missing ones of the first 3 were generated.
    const ids = lines(predPath).map((l) => (JSON.parse(l) as { id: string }).id);
    expect(lines(predPath).slice(0, kept.length)).toEqual(kept);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(['dev-0', 'dev-1', 'dev-2']));
    expect(ids.length).toBe(
      kept.length + ['dev-0', 'dev-1', 'dev-2'].filter((id) => !ids.slice(0, kept.length).includes(id)).length,
    );
  }, 90_000);
});
