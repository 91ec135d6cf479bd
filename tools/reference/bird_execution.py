"""BIRD's execution verdicts on test/fixtures/bird, by BIRD's own rule (bird/llm/src/evaluation.py,
execute_sql: run both queries with Python's sqlite3, right when set(pred rows) == set(gold rows),
any error scores 0). Needs only the standard library; writes test/fixtures/bird/reference.json.
Run: python3 tools/reference/bird_execution.py
"""
import json
import os
import sqlite3

ROOT = "test/fixtures/bird"


def execute_sql(predicted_sql, ground_truth, db_path):
    # Read-only, as sqlora's sandbox runs queries (BIRD's script opens the file read-write).
    conn = sqlite3.connect(f"file:{os.path.abspath(db_path)}?mode=ro", uri=True)
    cursor = conn.cursor()
    try:
        cursor.execute(predicted_sql)
        predicted_res = cursor.fetchall()
        cursor.execute(ground_truth)
        ground_truth_res = cursor.fetchall()
        return 1 if set(predicted_res) == set(ground_truth_res) else 0
    except Exception:
        return 0
    finally:
        conn.close()


dev = json.load(open(f"{ROOT}/dev/dev.json"))
preds = [json.loads(line) for line in open(f"{ROOT}/predictions.jsonl") if line.strip()]
res = []
for ex, p in zip(dev, preds):
    db = f"{ROOT}/dev/dev_databases/{ex['db_id']}/{ex['db_id']}.sqlite"
    res.append(execute_sql(p["sql"], ex["SQL"], db))
acc = {}
for level in ["simple", "moderate", "challenging"]:
    some = [r for r, ex in zip(res, dev) if ex["difficulty"] == level]
    acc[level] = {"count": len(some), "correct": sum(some)}
acc["all"] = {"count": len(res), "correct": sum(res)}
json.dump({"execution": res, "by_difficulty": acc}, open(f"{ROOT}/reference.json", "w"), indent=1)
print(json.dumps(acc))
