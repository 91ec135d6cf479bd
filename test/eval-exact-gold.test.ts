/** Exact-set-match on the fixture's dev examples with gold as prediction, and its error reporting. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exactSetMatch } from '../src/eval/exactSetMatch.js';
import { spiderHardness } from '../src/eval/hardness.js';
import { loadForeignKeyMaps, loadSpiderSchema } from '../src/eval/spiderSchema.js';

const spider = join(import.meta.dirname, 'fixtures', 'spider');
const dev = JSON.parse(readFileSync(join(spider, 'dev.json'), 'utf8')) as { db_id: string; query: string }[];
const fkMaps = loadForeignKeyMaps(join(spider, 'tables.json'));
const schemaOf = (db: string) => loadSpiderSchema(join(spider, 'database', db, `${db}.sqlite`));

describe('exactSetMatch', () => {
  it('matches every fixture dev gold query against itself', () => {
    expect(dev.length).toBeGreaterThan(150);
    for (const ex of dev) {
      expect(exactSetMatch(ex.query, ex.query, schemaOf(ex.db_id), fkMaps.get(ex.db_id)!), ex.query).toEqual({
        match: true,
      });
    }
  });

  it('scores an unparsable prediction as a non-match and says why', () => {
    const r = exactSetMatch(
      'SELECT count(*) FROM singer',
      'SELECT count(*) FROM nowhere',
      schemaOf('concert_singer'),
      fkMaps.get('concert_singer')!,
    );
    expect(r.match).toBe(false);
    expect(r.error).toMatch(/prediction does not parse: .*nowhere/);
  });

  it('throws, naming the query, when the gold query does not parse', () => {
    expect(() =>
      exactSetMatch(
        'SELECT nothing FROM singer',
        'SELECT count(*) FROM singer',
        schemaOf('concert_singer'),
        fkMaps.get('concert_singer')!,
      ),
    ).toThrow(/gold query .*unknown column: nothing.*SELECT nothing FROM singer/);
    expect(() => spiderHardness('SELECT name FROM', schemaOf('concert_singer'))).toThrow(/SELECT name FROM/);
  });

  it('parses and matches all fixture dev pairs quickly', () => {
    const t0 = performance.now();
    for (const ex of dev) exactSetMatch(ex.query, ex.query, schemaOf(ex.db_id), fkMaps.get(ex.db_id)!);
    // ~180 pairs; the whole 1,034-example dev set takes about a second.
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
