import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluatePredictions } from '../src/eval/evaluate.js';
import { loadEvalItems } from '../src/eval/predictions.js';
import { UserError } from '../src/util/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-inputs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r) + '\n').join('');

const dev = (
  JSON.parse(readFileSync('test/fixtures/spider/dev.json', 'utf8')) as {
    db_id: string;
    query: string;
    question: string;
  }[]
).slice(0, 5);
// What `sqlora prepare` writes to eval.jsonl (the fields evaluation reads).
const evalJsonl = file(
  'eval.jsonl',
  jsonl(
    dev.map((e, i) => ({ id: `dev-${i}`, db_id: e.db_id, question: e.question, query: e.query, hardness: 'easy' })),
  ),
);
const goldSql = file('gold.sql', dev.map((e) => `${e.query}\t${e.db_id}\n`).join(''));

function userError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return (err as Error).message;
  }
  throw new Error('expected a UserError');
}

describe('prediction inputs', () => {
  it('matches JSONL predictions to eval.jsonl by id, in gold order', () => {
    const pred = file(
      'pred.jsonl',
      jsonl([
        { id: 'dev-2', sql: 'P2' },
        { id: 'dev-0', sql: 'P0' },
        { id: 'dev-4', sql: 'P4' },
        { id: 'dev-1', sql: 'P1' },
        { id: 'dev-3', sql: 'P3' },
      ]),
    );
    const items = loadEvalItems({ predPath: pred, goldPath: evalJsonl });
    expect(items.map((i) => [i.index, i.id, i.pred, i.hardness])).toEqual(
      [0, 1, 2, 3, 4].map((k) => [k, `dev-${k}`, `P${k}`, 'easy']),
    );
    expect(items[3]).toMatchObject({ db_id: dev[3].db_id, gold: dev[3].query });
    expect(loadEvalItems({ predPath: pred, goldPath: evalJsonl, limit: 2 }).map((i) => i.pred)).toEqual(['P0', 'P1']);
  });

  it('reads the official formats: SQL<TAB>db_id gold lines and one SQL per line', () => {
    const pred = file('pred.sql', 'SELECT 1\nSELECT 2\tconcert_singer\n\nSELECT 4\nSELECT 5\n\n');
    const items = loadEvalItems({ predPath: pred, goldPath: goldSql });
    expect(items.map((i) => i.pred)).toEqual(['SELECT 1', 'SELECT 2', '', 'SELECT 4', 'SELECT 5']);
    expect(items.map((i) => i.db_id)).toEqual(dev.map((e) => e.db_id));
    expect(items[0].hardness).toBeUndefined();
  });

  it('reads the reference results JSON with its own gold', () => {
    const items = loadEvalItems({ predPath: 'test/fixtures/seed/finetuned_results.json', limit: 3 });
    expect(items.map((i) => [i.db_id, i.gold, i.pred])).toEqual([
      ['concert_singer', 'SELECT count(*) FROM singer', 'SELECT count(*) FROM singer;'],
      ['concert_singer', 'SELECT count(*) FROM singer', 'SELECT count(*) FROM singer GROUP BY singer;'],
      [
        'concert_singer',
        'SELECT name ,  country ,  age FROM singer ORDER BY age DESC',
        'SELECT Name , Country , Age FROM singer ORDER BY Age ASC LIMIT 1 OFFSET 1;',
      ],
    ]);
  });

  it('rejects bad input with one clear message', () => {
    const bad = file('bad.jsonl', '{"id":"dev-0","sql":"SELECT 1"}\n{"id":"dev-1", sql}\n');
    expect(userError(() => loadEvalItems({ predPath: bad, goldPath: evalJsonl }))).toMatch(
      /^malformed JSON in .*bad\.jsonl:2: /,
    );
    const unknown = file(
      'unknown.jsonl',
      jsonl([
        { id: 'dev-0', sql: 'a' },
        { id: 'dev-99', sql: 'b' },
      ]),
    );
    expect(userError(() => loadEvalItems({ predPath: unknown, goldPath: evalJsonl }))).toMatch(
      /unknown\.jsonl:2: id "dev-99" is not in .*eval\.jsonl/,
    );
    const dup = file(
      'dup.jsonl',
      jsonl([
        { id: 'dev-0', sql: 'a' },
        { id: 'dev-0', sql: 'b' },
      ]),
    );
    expect(userError(() => loadEvalItems({ predPath: dup, goldPath: evalJsonl }))).toMatch(
      /dup\.jsonl:2: id "dev-0" repeats .*dup\.jsonl:1/,
    );
    const partial = file(
      'partial.jsonl',
      jsonl([
        { id: 'dev-0', sql: 'a' },
        { id: 'dev-1', sql: 'b' },
      ]),
    );
    expect(userError(() => loadEvalItems({ predPath: partial, goldPath: evalJsonl }))).toMatch(
      /3 of 5 gold examples .* have no prediction .*pass --limit 2/,
    );
    expect(loadEvalItems({ predPath: partial, goldPath: evalJsonl, limit: 2 })).toHaveLength(2);
    const noSql = file('nosql.jsonl', jsonl([{ id: 'dev-0', query: 'a' }]));
    expect(userError(() => loadEvalItems({ predPath: noSql, goldPath: evalJsonl }))).toMatch(
      /nosql\.jsonl:1: "sql" must be a string \(missing\)/,
    );
    const short = file('short.sql', 'SELECT 1\nSELECT 2\n');
    expect(userError(() => loadEvalItems({ predPath: short, goldPath: goldSql }))).toMatch(
      /has 2 predictions but .*gold\.sql has 5 gold examples.*--limit 2/,
    );
    const empty = file('empty.sql', '\n\n');
    expect(userError(() => loadEvalItems({ predPath: empty, goldPath: goldSql }))).toMatch(
      /empty\.sql has no predictions/,
    );
    const badGold = file('bad-gold.sql', 'SELECT 1\tconcert_singer\nSELECT 2\n');
    expect(userError(() => loadEvalItems({ predPath: short, goldPath: badGold }))).toMatch(
      /bad-gold\.sql:2: expected "SQL<TAB>db_id"/,
    );
    expect(userError(() => loadEvalItems({ predPath: short }))).toMatch(/--gold is required/);
    expect(
      userError(() => loadEvalItems({ predPath: 'test/fixtures/seed/finetuned_results.json', goldPath: goldSql })),
    ).toMatch(/--gold is not used with a results JSON/);
    expect(userError(() => loadEvalItems({ predPath: join(tmp, 'nope.jsonl'), goldPath: evalJsonl }))).toMatch(
      /predictions file not found: .*nope\.jsonl/,
    );
    const noResults = file('other.json', '{"predictions": []}');
    expect(userError(() => loadEvalItems({ predPath: noResults }))).toMatch(
      /other\.json: expected a results JSON object with a "detailed_results" array/,
    );
  });

  it('stops on a db_id that has no database, before running anything', async () => {
    const items = [
      { index: 0, db_id: 'concert_singer', gold: 'SELECT 1', pred: 'SELECT 1' },
      { index: 1, db_id: 'no_such_db', gold: 'SELECT 1', pred: 'SELECT 1' },
    ];
    await expect(evaluatePredictions(items, { dbDir: 'test/fixtures/spider/database' })).rejects.toThrow(
      /unknown db_id "no_such_db" \(example 1\): .*no_such_db\.sqlite does not exist/,
    );
    await expect(
      evaluatePredictions(items.slice(0, 1), {
        dbDir: 'test/fixtures/spider/database',
        tablesPath: join(tmp, 'none.json'),
      }),
    ).rejects.toThrow(UserError);
  });
});
