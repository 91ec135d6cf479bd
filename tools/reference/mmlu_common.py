"""MMLU as lm-evaluation-harness's `mmlu` task builds it, written independently of sqlora's TypeScript.

Used by mmlu_reference.py (the fixture of per-choice log-likelihoods on the tiny models) and
mmlu_hf.py (the plain HF transformers loop that sqlora's speed is measured against).

- Data: the original CSV layout (DIR/test/{subject}_test.csv, DIR/dev/{subject}_dev.csv, or under
  DIR/data/), read with Python's csv module; subjects sorted by name, rows in file order.
- Prompt (the harness's _default_template_yaml and per-subject description):
    "The following are multiple choice questions (with answers) about {subject with _ as space}.\n\n"
    + for each of the subject's first n dev rows: doc_to_text(row) + " " + letter + "\n\n"
    + doc_to_text(question), doc_to_text = "{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:"
- Requests: continuation " A".."D"; TemplateLM._encode_pair: trailing whitespace of the context
  moves to the continuation, context encoded alone, whole string encoded, continuation = the whole
  string's tokens after the context's count; the model reads (context + continuation)[-(max_length+1):][:-1].
"""
import csv
import os

LETTERS = ["A", "B", "C", "D"]


def csv_root(data):
    for base in (data, os.path.join(data, "data")):
        if os.path.isdir(os.path.join(base, "test")):
            return base
    raise SystemExit(f"{data}: no test/ folder (the original MMLU CSV layout)")


def read_split(root, split):
    out = {}
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        return out
    suffix = f"_{split}.csv"
    for name in sorted(os.listdir(folder)):
        if not name.endswith(suffix):
            continue
        subject = name[: -len(suffix)]
        with open(os.path.join(folder, name), newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        out[subject] = [
            {"subject": subject, "index": i, "question": r[0], "choices": r[1:5], "answer": LETTERS.index(r[5].strip())}
            for i, r in enumerate(rows)
        ]
    return out


def read_mmlu(data):
    root = csv_root(data)
    return read_split(root, "test"), read_split(root, "dev")


def doc_to_text(q):
    c = q["choices"]
    return f"{q['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"


def context(q, shots):
    desc = f"The following are multiple choice questions (with answers) about {' '.join(q['subject'].split('_'))}.\n\n"
    examples = "".join(f"{doc_to_text(s)} {LETTERS[s['answer']]}\n\n" for s in shots)
    return desc + examples + doc_to_text(q)


def encode_pair(tokenizer, ctx, cont):
    n_spaces = len(ctx) - len(ctx.rstrip())
    if n_spaces > 0:
        cont = ctx[-n_spaces:] + cont
        ctx = ctx[:-n_spaces]
    whole = tokenizer(ctx + cont, add_special_tokens=False)["input_ids"]
    ctx_ids = tokenizer(ctx, add_special_tokens=False)["input_ids"]
    return ctx_ids, whole[len(ctx_ids) :]


def model_input(ctx_ids, cont_ids, max_length):
    return (ctx_ids + cont_ids)[-(max_length + 1) :][:-1]


def select(test, dev, shots, limit=None, subjects=None):
    """[(question, shot rows)] in result order."""
    names = sorted(test) if subjects is None else sorted(set(subjects))
    out = []
    for s in names:
        rows = test[s] if limit is None else test[s][:limit]
        few = dev.get(s, [])[:shots]
        if len(few) < shots:
            raise SystemExit(f"subject {s} has {len(few)} dev questions; {shots}-shot needs {shots}")
        out.extend((q, few) for q in rows)
    return out
