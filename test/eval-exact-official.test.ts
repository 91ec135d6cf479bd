/**
 * Our Spider evaluator against decisions of the official one (taoyds/test-suite-sql-eval),
 * recorded by tools/check-evaluator/run.ts on the fixture databases: schema and foreign-key
 * maps, tokenization, the parsed structure of gold queries, exact-set-match and hardness.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exactSetMatch } from '../src/eval/exactSetMatch.js';
import { spiderHardness } from '../src/eval/hardness.js';
import { loadForeignKeyMaps, loadSpiderSchema } from '../src/eval/spiderSchema.js';
import { parseSpiderSql } from '../src/eval/sqlParse.js';
import { spiderTokenize } from '../src/eval/sqlTokenize.js';

interface OfficialCase {
  kind: string;
  note?: string;
  db_id: string;
  gold: string;
  pred: string;
  official_exact: 0 | 1;
  official_hardness: string;
  official_pred_tokens: string[] | null;
  official_pred_parsed: boolean;
  official_gold_sql?: unknown;
}

const fixtures = join(import.meta.dirname, 'fixtures');
const official = JSON.parse(readFileSync(join(fixtures, 'eval', 'official-decisions.json'), 'utf8')) as {
  schemas: Record<string, Record<string, string[]>>;
  foreign_keys: Record<string, Record<string, string>>;
  cases: OfficialCase[];
};
const dbPath = (db: string) => join(fixtures, 'spider', 'database', db, `${db}.sqlite`);
const fkMaps = loadForeignKeyMaps(join(fixtures, 'spider', 'tables.json'));
const label = (c: OfficialCase) => `${c.kind}${c.note ? ` (${c.note})` : ''}: ${c.pred}`;

describe('schema and foreign keys as the official code reads them', () => {
  for (const [db, tables] of Object.entries(official.schemas)) {
    it(db, () => {
      expect([...loadSpiderSchema(dbPath(db)).tables.entries()]).toEqual(Object.entries(tables));
      expect(Object.fromEntries(fkMaps.get(db)!)).toEqual(official.foreign_keys[db]);
    });
  }
});

describe('official decisions on the fixture databases', () => {
  it('covers both decisions and every hardness level', () => {
    const decisions = new Set(official.cases.map((c) => c.official_exact));
    const levels = new Set(official.cases.map((c) => c.official_hardness));
    expect([...decisions].sort()).toEqual([0, 1]);
    expect([...levels].sort()).toEqual(['easy', 'extra', 'hard', 'medium']);
    expect(official.cases.length).toBeGreaterThan(350);
  });

  it('tokenizes every prediction as the official tokenizer', () => {
    for (const c of official.cases) {
      let toks: string[] | null;
      try {
        toks = spiderTokenize(c.pred.replaceAll('value', '1'));
      } catch {
        toks = null;
      }
      expect(toks, label(c)).toEqual(c.official_pred_tokens);
    }
  });

  it('parses every gold query into the official structure', () => {
    const golds = official.cases.filter((c) => c.official_gold_sql !== undefined);
    expect(golds.length).toBeGreaterThan(150);
    for (const c of golds) {
      // JSON round trip: the official tuples were written as lists.
      const ours = JSON.parse(JSON.stringify(parseSpiderSql(c.gold, loadSpiderSchema(dbPath(c.db_id)))));
      expect(ours, c.gold).toEqual(c.official_gold_sql);
    }
  });

  it('decides exact-set-match and hardness as the official script', () => {
    for (const c of official.cases) {
      const schema = loadSpiderSchema(dbPath(c.db_id));
      const r = exactSetMatch(c.gold, c.pred, schema, fkMaps.get(c.db_id)!);
      expect(r.match, label(c)).toBe(c.official_exact === 1);
      // Parse acceptance is checked on its own: many rejected predictions would not match anyway.
      expect(!r.error?.startsWith('prediction does not parse'), label(c)).toBe(c.official_pred_parsed);
      expect(spiderHardness(c.gold, schema), c.gold).toBe(c.official_hardness);
    }
  });
});
