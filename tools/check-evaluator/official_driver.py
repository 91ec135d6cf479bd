"""Per-example decisions of the official Spider evaluator (taoyds/test-suite-sql-eval).

The official code is never part of this repository: pass the folder of a local copy of it.
For each case this replays the body of evaluation.py's evaluate() loop on one pair
(prediction's "value" -> "1", hardness of the gold, empty SQL for an unparsable prediction,
value/distinct removal, foreign-key unification, Evaluator.eval_exact_match) and, with
--exec, exec_eval.eval_exec_match with the script's defaults (no value plugging, DISTINCT
removed). An exception the official script would not catch is recorded as a crash.

Usage:
  /usr/bin/python3 official_driver.py OFFICIAL_DIR DB_DIR TABLES_JSON CASES_JSONL OUT_JSONL
      [--exec] [--dump-meta=PATH]

CASES_JSONL rows: {"id", "db_id", "gold", "pred"}; OUT_JSONL rows: {"id", "hardness",
"exact" (1, 0 or null when the official code crashed), "pred_parsed", "crash", "exec",
"pred_tokens" (process_sql.tokenize of the prediction, null where it raises), and, when the
prediction is the gold query itself, "gold_sql" (get_sql's structure, tuples as lists)}.
--dump-meta writes {"schemas": {db: get_schema}, "foreign_keys": {db: foreign-key map}} for the
databases of the cases.

nltk's punkt sentence model is not needed: word_tokenize is called with preserve_line=True,
which tokenizes the whole query as one line (queries are single sentences).
"""

import json
import os
import sys
import traceback


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    with_exec = '--exec' in sys.argv
    meta_path = next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--dump-meta=')), None)
    if len(args) != 5:
        sys.exit(__doc__)
    official_dir, db_dir, tables_json, cases_path, out_path = args
    sys.path.insert(0, os.path.abspath(official_dir))

    from nltk import word_tokenize
    import process_sql
    process_sql.word_tokenize = lambda s, **_: word_tokenize(s, preserve_line=True)
    import evaluation as ev

    kmaps = ev.build_foreign_key_map_from_json(tables_json)
    schemas = {}
    evaluator = ev.Evaluator()

    with open(cases_path) as f:
        cases = [json.loads(line) for line in f if line.strip()]

    with open(out_path, 'w') as out:
        for case in cases:
            db_name = case['db_id']
            db = os.path.join(db_dir, db_name, db_name + '.sqlite')
            if db not in schemas:
                schemas[db] = process_sql.Schema(process_sql.get_schema(db))
            schema = schemas[db]
            g_str = case['gold']
            p_str = case['pred'].replace('value', '1')
            row = {'id': case['id'], 'hardness': None, 'exact': None, 'pred_parsed': None,
                   'crash': None, 'exec': None, 'pred_tokens': None}
            try:
                row['pred_tokens'] = process_sql.tokenize(p_str)
            except Exception:
                pass
            try:
                g_sql = process_sql.get_sql(schema, g_str)
                if case['pred'] == g_str:
                    row['gold_sql'] = json.loads(json.dumps(g_sql))
                row['hardness'] = evaluator.eval_hardness(g_sql)
                try:
                    p_sql = process_sql.get_sql(schema, p_str)
                    row['pred_parsed'] = True
                except Exception:
                    p_sql = empty_sql()
                    row['pred_parsed'] = False
                kmap = kmaps[db_name]
                g_valid = ev.build_valid_col_units(g_sql['from']['table_units'], schema)
                g_sql = ev.rebuild_sql_col(g_valid, ev.rebuild_sql_val(g_sql), kmap)
                p_valid = ev.build_valid_col_units(p_sql['from']['table_units'], schema)
                p_sql = ev.rebuild_sql_col(p_valid, ev.rebuild_sql_val(p_sql), kmap)
                row['exact'] = 1 if evaluator.eval_exact_match(p_sql, g_sql) else 0
            except Exception as e:
                row['crash'] = '%s: %s' % (type(e).__name__, e)
                if os.environ.get('DRIVER_TRACE'):
                    traceback.print_exc()
            if with_exec:
                from exec_eval import eval_exec_match
                try:
                    row['exec'] = eval_exec_match(db=db, p_str=p_str, g_str=g_str, plug_value=False,
                                                  keep_distinct=False,
                                                  progress_bar_for_each_datapoint=False)
                except Exception as e:
                    row['exec_crash'] = '%s: %s' % (type(e).__name__, e)
            out.write(json.dumps(row) + '\n')

    if meta_path:
        dbs = sorted({case['db_id'] for case in cases})
        with open(meta_path, 'w') as f:
            json.dump({'schemas': {db: process_sql.get_schema(os.path.join(db_dir, db, db + '.sqlite')) for db in dbs},
                       'foreign_keys': {db: kmaps[db] for db in dbs}}, f)


def empty_sql() -> dict:
    # What evaluate() substitutes for a prediction that does not parse.
    return {'except': None, 'from': {'conds': [], 'table_units': []}, 'groupBy': [],
            'having': [], 'intersect': None, 'limit': None, 'orderBy': [],
            'select': [False, []], 'union': None, 'where': []}


if __name__ == '__main__':
    main()
