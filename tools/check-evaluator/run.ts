/**
 * Agreement check between our Spider evaluator and the official one (taoyds/test-suite-sql-eval).
 *
 *   npx tsx tools/check-evaluator/run.ts --official /tmp/official-eval [--spider DIR] [--seed DIR]
 *       [--out DIR] [--exec] [--python /usr/bin/python3] [--fixture-out FILE] [--fuzz-rounds N]
 *
 * Builds cases (dev gold as prediction, deterministic perturbations of it, another query of the
 * same database, and the reference workflow's real predictions), has official_driver.py score
 * them with the official code from --official, scores them with ours, and writes report.md and
 * disagreements.json to --out. With --exec, execution decisions are compared too.
 * --fixture-out writes a sample of official decisions on the test-fixture databases.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exactSetMatch } from '../../src/eval/exactSetMatch.js';
import { databaseVariants, executionMatch } from '../../src/eval/execution.js';
import { spiderHardness } from '../../src/eval/hardness.js';
import { SqlSandbox } from '../../src/eval/sandbox.js';
import { spiderTokenize } from '../../src/eval/sqlTokenize.js';
import { loadForeignKeyMaps, loadSpiderSchema } from '../../src/eval/spiderSchema.js';
import { readJsonFile, readJsonl, writeJsonl } from '../../src/util/jsonl.js';
import { EDGE_CASES } from './edgeCases.js';
import { perturb } from './perturb.js';

interface Case {
  id: number;
  kind: string;
  db_id: string;
  gold: string;
  pred: string;
  note?: string;
}

interface OfficialRow {
  id: number;
  hardness: string | null;
  exact: 0 | 1 | null;
  pred_parsed: boolean | null;
  crash: string | null;
  exec: 0 | 1 | null;
  exec_crash?: string;
  pred_tokens: string[] | null;
  gold_sql?: unknown;
}

type Decision = 'match' | 'no-match' | 'crash';

interface Outcome {
  c: Case;
  official: OfficialRow;
  exact: Decision;
  ourError?: string;
  hardness: string | null;
  /** Whether our tokenization of the prediction equals the official one (both failing counts as equal). */
  tokensAgree: boolean;
  exec?: Decision;
  execError?: string;
}

const FIXTURE_DBS = new Set(['concert_singer', 'pets_1', 'car_1']);

const { values: opts } = parseArgs({
  options: {
    official: { type: 'string' },
    spider: { type: 'string', default: '/work/shared/spider' },
    seed: { type: 'string', default: '/work/shared/seed' },
    out: { type: 'string', default: 'out/check-evaluator' },
    python: { type: 'string', default: '/usr/bin/python3' },
    exec: { type: 'boolean', default: false },
    'fixture-out': { type: 'string' },
    'fuzz-rounds': { type: 'string', default: '1' },
  },
});
if (!opts.official) {
  console.error(
    'usage: npx tsx tools/check-evaluator/run.ts --official DIR_WITH_evaluation.py [--spider DIR] [--seed DIR] [--out DIR] [--exec] [--python PATH] [--fixture-out FILE] [--fuzz-rounds N]',
  );
  process.exit(2);
}
const spider = opts.spider;
const dbPath = (db: string) => join(spider, 'database', db, `${db}.sqlite`);

function buildCases(): Case[] {
  const dev = readJsonFile<{ db_id: string; query: string }[]>(join(spider, 'dev.json'));
  const cases: Case[] = [];
  const add = (kind: string, db_id: string, gold: string, pred: string) =>
    cases.push({ id: cases.length, kind, db_id, gold, pred });
  dev.forEach((ex, i) => {
    const columns = new Set([...loadSpiderSchema(dbPath(ex.db_id)).tables.values()].flat());
    add('gold', ex.db_id, ex.query, ex.query);
    for (const p of perturb(ex.query, i, columns, Number(opts['fuzz-rounds']))) add(p.kind, ex.db_id, ex.query, p.pred);
    // Another question's gold query on the same database: valid SQL that mostly should not match.
    const other = dev
      .slice(i + 1)
      .concat(dev.slice(0, i))
      .find((e) => e.db_id === ex.db_id && e.query !== ex.query);
    if (other) add('other-query', ex.db_id, ex.query, other.query);
  });
  for (const e of EDGE_CASES)
    cases.push({ id: cases.length, kind: 'edge', db_id: e.db_id, gold: e.gold, pred: e.pred, note: e.note });
  for (const [file, kind] of [
    ['finetuned_results.json', 'seed-finetuned'],
    ['baseline_results.json', 'seed-baseline'],
  ]) {
    const results = readJsonFile<{
      detailed_results: { db_id: string; expected_sql: string; generated_sql: string }[];
    }>(join(opts.seed, file));
    for (const r of results.detailed_results) add(kind, r.db_id, r.expected_sql, r.generated_sql);
  }
  return cases;
}

function runOfficial(cases: Case[], out: string): OfficialRow[] {
  const casesPath = join(out, 'cases.jsonl');
  const officialPath = join(out, 'official.jsonl');
  writeJsonl(casesPath, cases);
  const driver = join(dirname(fileURLToPath(import.meta.url)), 'official_driver.py');
  const args = [driver, opts.official!, join(spider, 'database'), join(spider, 'tables.json'), casesPath, officialPath];
  if (opts.exec) args.push('--exec');
  if (opts['fixture-out']) args.push(`--dump-meta=${join(out, 'meta.json')}`);
  const t0 = performance.now();
  const res = spawnSync(opts.python, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (res.status !== 0) throw new Error(`official driver failed (exit ${res.status ?? res.signal})`);
  console.error(`official: ${cases.length} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const rows = readJsonl<OfficialRow>(officialPath);
  if (rows.length !== cases.length)
    throw new Error(`official driver wrote ${rows.length} rows for ${cases.length} cases`);
  return rows;
}

const officialExact = (r: OfficialRow): Decision => (r.crash !== null ? 'crash' : r.exact === 1 ? 'match' : 'no-match');
const officialExec = (r: OfficialRow): Decision => (r.exec_crash ? 'crash' : r.exec === 1 ? 'match' : 'no-match');

function runOurs(cases: Case[], official: OfficialRow[]): Outcome[] {
  const fk = loadForeignKeyMaps(join(spider, 'tables.json'));
  const t0 = performance.now();
  const outcomes = cases.map((c, i): Outcome => {
    const schema = loadSpiderSchema(dbPath(c.db_id));
    const tokensAgree =
      JSON.stringify(tokenizeOrNull(c.pred.replaceAll('value', '1'))) === JSON.stringify(official[i].pred_tokens);
    try {
      const r = exactSetMatch(c.gold, c.pred, schema, fk.get(c.db_id)!);
      const crashed = r.error?.startsWith('the official evaluator fails') ?? false;
      return {
        c,
        official: official[i],
        exact: crashed ? 'crash' : r.match ? 'match' : 'no-match',
        ourError: r.error,
        hardness: spiderHardness(c.gold, schema),
        tokensAgree,
      };
    } catch (err) {
      return {
        c,
        official: official[i],
        exact: 'crash',
        ourError: (err as Error).message,
        hardness: null,
        tokensAgree,
      };
    }
  });
  console.error(`ours: ${cases.length} cases in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  return outcomes;
}

function tokenizeOrNull(sql: string): string[] | null {
  try {
    return spiderTokenize(sql);
  } catch {
    return null;
  }
}

async function runOurExecution(outcomes: Outcome[]): Promise<void> {
  const sandbox = new SqlSandbox(4);
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < outcomes.length) {
      const o = outcomes[next++];
      const db = dbPath(o.c.db_id);
      // evaluation.py hands eval_exec_match the prediction with "value" already replaced.
      const r = await executionMatch(sandbox, databaseVariants(db), o.c.gold, o.c.pred.replaceAll('value', '1'), {
        timeoutMs: 30_000,
      });
      o.exec = r.match ? 'match' : 'no-match';
      o.execError = r.error;
    }
  };
  try {
    await Promise.all(Array.from({ length: 4 }, worker));
  } finally {
    sandbox.close();
  }
  console.error(`ours (execution): ${outcomes.length} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

const pct = (a: number, n: number) => (n === 0 ? '-' : `${((100 * a) / n).toFixed(2)}%`);

function report(outcomes: Outcome[]): string {
  const kinds = [...new Set(outcomes.map((o) => o.c.kind))];
  const lines: string[] = [];
  const table = (title: string, ours: (o: Outcome) => Decision | undefined, theirs: (o: Outcome) => Decision) => {
    lines.push(
      `## ${title}`,
      '',
      '| kind | cases | agree | agreement | official match | ours match | official crash |',
      '|---|---:|---:|---:|---:|---:|---:|',
    );
    const row = (name: string, os: Outcome[]) => {
      const agree = os.filter((o) => ours(o) === theirs(o)).length;
      const count = (f: (o: Outcome) => Decision | undefined, d: Decision) => os.filter((o) => f(o) === d).length;
      lines.push(
        `| ${name} | ${os.length} | ${agree} | ${pct(agree, os.length)} | ${count(theirs, 'match')} | ${count(ours, 'match')} | ${count(theirs, 'crash')} |`,
      );
    };
    for (const k of kinds)
      row(
        k,
        outcomes.filter((o) => o.c.kind === k),
      );
    row('**all**', outcomes);
    lines.push('');
    const diff = outcomes.filter((o) => ours(o) !== theirs(o));
    lines.push(`### Disagreements (${diff.length})`, '');
    for (const o of diff) {
      lines.push(
        `- #${o.c.id} ${o.c.kind} (${o.c.db_id}): official ${theirs(o)}, ours ${ours(o)}${o.ourError ? ` — ours: ${o.ourError}` : ''}`,
      );
      lines.push(`  - gold: \`${o.c.gold}\``, `  - pred: \`${o.c.pred.replace(/\s+/g, ' ')}\``);
    }
    lines.push('');
  };
  const dev = outcomes.filter((o) => o.c.kind === 'gold');
  const hardAgree = dev.filter((o) => o.hardness === o.official.hardness).length;
  const tokAgree = outcomes.filter((o) => o.tokensAgree).length;
  const parsed = outcomes.filter((o) => o.official.pred_parsed !== null);
  const parseAgree = parsed.filter(
    (o) => !(o.ourError?.startsWith('prediction does not parse') ?? false) === o.official.pred_parsed,
  ).length;
  lines.push(
    '# Evaluator agreement (generated by tools/check-evaluator/run.ts)',
    '',
    `Hardness of the ${dev.length} dev gold queries: ${hardAgree} agree (${pct(hardAgree, dev.length)}).`,
    `Tokenization of the ${outcomes.length} predictions: ${tokAgree} agree (${pct(tokAgree, outcomes.length)}).`,
    `Parser acceptance of the ${parsed.length} predictions: ${parseAgree} agree (${pct(parseAgree, parsed.length)}); the official parser accepts ${parsed.filter((o) => o.official.pred_parsed).length}.`,
    '',
  );
  for (const o of outcomes.filter((x) => !x.tokensAgree).slice(0, 20))
    lines.push(`- tokens differ on #${o.c.id}: \`${o.c.pred}\``);
  table(
    'Exact-set-match',
    (o) => o.exact,
    (o) => officialExact(o.official),
  );
  if (opts.exec)
    table(
      'Execution',
      (o) => o.exec,
      (o) => officialExec(o.official),
    );
  return lines.join('\n');
}

/**
 * Official decisions for the unit tests, on the test-fixture databases only: every dev gold
 * query (with its official parse) and a spread of about 200 perturbed or real predictions
 * (up to 6 per kind and decision), plus the official schema and foreign-key maps.
 */
function fixture(outcomes: Outcome[], out: string): { cases: object[]; [key: string]: unknown } {
  const pool = outcomes.filter(
    (o) => FIXTURE_DBS.has(o.c.db_id) && o.official.crash === null && o.official.hardness !== null,
  );
  const picked = pool.filter((o) => o.c.kind === 'gold' || o.c.kind === 'edge');
  const groups = new Map<string, Outcome[]>();
  for (const o of pool.filter((x) => x.c.kind !== 'gold' && x.c.kind !== 'edge')) {
    const key = `${o.c.kind}/${o.official.exact}`;
    groups.set(key, [...(groups.get(key) ?? []), o]);
  }
  for (const group of groups.values()) {
    const step = Math.max(1, Math.floor(group.length / 6));
    for (let i = 0; i < group.length && i < 6 * step; i += step) picked.push(group[i]);
  }
  const meta = readJsonFile<{ schemas: Record<string, unknown>; foreign_keys: Record<string, unknown> }>(
    join(out, 'meta.json'),
  );
  const only = (m: Record<string, unknown>) => Object.fromEntries([...FIXTURE_DBS].map((db) => [db, m[db]]));
  return {
    source:
      'official decisions of taoyds/test-suite-sql-eval (evaluation.py, process_sql.py) via tools/check-evaluator/run.ts',
    schemas: only(meta.schemas),
    foreign_keys: only(meta.foreign_keys),
    cases: picked
      .sort((a, b) => a.c.id - b.c.id)
      .map((o) => ({
        kind: o.c.kind,
        ...(o.c.note ? { note: o.c.note } : {}),
        db_id: o.c.db_id,
        gold: o.c.gold,
        pred: o.c.pred,
        official_exact: o.official.exact,
        official_hardness: o.official.hardness,
        official_pred_parsed: o.official.pred_parsed,
        official_pred_tokens: o.official.pred_tokens,
        ...(o.c.kind === 'gold' ? { official_gold_sql: o.official.gold_sql } : {}),
      })),
  };
}

async function main(): Promise<void> {
  mkdirSync(opts.out, { recursive: true });
  const cases = buildCases();
  const official = runOfficial(cases, opts.out);
  const outcomes = runOurs(cases, official);
  if (opts.exec) await runOurExecution(outcomes);
  const md = report(outcomes);
  writeFileSync(join(opts.out, 'report.md'), md + '\n');
  const diffs = outcomes.filter(
    (o) => o.exact !== officialExact(o.official) || (opts.exec && o.exec !== officialExec(o.official)),
  );
  writeFileSync(
    join(opts.out, 'disagreements.json'),
    JSON.stringify(
      diffs.map(({ c, official: off, exact, ourError, exec, execError }) => ({
        ...c,
        official: off,
        ours: { exact, error: ourError, exec, execError },
      })),
      null,
      1,
    ),
  );
  if (opts['fixture-out']) {
    const data = fixture(outcomes, opts.out);
    mkdirSync(dirname(opts['fixture-out']), { recursive: true });
    // One case per line, so that a regenerated fixture diffs readably.
    const { cases: rows, ...rest } = data;
    const head = JSON.stringify(rest, null, 1).slice(0, -2);
    writeFileSync(
      opts['fixture-out'],
      `${head},\n "cases": [\n${rows.map((r) => `  ${JSON.stringify(r)}`).join(',\n')}\n ]\n}\n`,
    );
    console.error(`wrote official decisions to ${opts['fixture-out']}`);
  }
  console.log(md.split('### Disagreements')[0]);
  console.log(`full report: ${join(opts.out, 'report.md')}`);
}

await main();
