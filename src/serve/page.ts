/**
 * The web page GET / serves: one self-contained document (no external assets, so it works
 * offline and under a strict Content-Security-Policy). Choose a database, see its tables, ask a
 * question, see the SQL (highlighted) and the result table, and the session's history. Every
 * value from the server goes into the page as text (textContent), never as markup.
 */
const STYLE = `
:root { --fg: #1d232a; --muted: #5b6570; --line: #d8dde3; --accent: #1f6feb; --bg: #f6f8fa; --err: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: #fff; }
header { display: flex; gap: 16px; align-items: center; padding: 10px 20px; border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { font-size: 18px; margin: 0; }
main { display: grid; grid-template-columns: 260px 1fr 260px; gap: 20px; padding: 16px 20px; }
aside h2, section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 8px; }
#tables details { margin-bottom: 6px; }
#tables summary { cursor: pointer; font-weight: 600; }
#tables ul { margin: 4px 0 0 0; padding-left: 18px; color: var(--muted); font-size: 13px; }
form { display: flex; gap: 8px; }
#question { flex: 1; font: inherit; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; }
button { font: inherit; padding: 8px 14px; border: 0; border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .6; cursor: wait; }
pre#sql { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px; white-space: pre-wrap; min-height: 1.5em; }
.kw { color: #8250df; font-weight: 600; } .str { color: #0a7f3f; } .num { color: #b35900; } .fn { color: #1f6feb; }
#status { color: var(--muted); font-size: 13px; margin: 6px 0; }
#status.error { color: var(--err); }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; }
th { background: var(--bg); }
#history ol { padding-left: 18px; margin: 0; }
#history li { cursor: pointer; margin-bottom: 6px; }
#history li small { display: block; color: var(--muted); }
#key { display: none; }
`;

const SCRIPT = `
'use strict';
const $ = (id) => document.getElementById(id);
const KEYWORDS = new Set('SELECT FROM WHERE AND OR NOT IN IS NULL AS ON JOIN LEFT RIGHT INNER OUTER CROSS GROUP BY ORDER HAVING LIMIT OFFSET DISTINCT UNION ALL INTERSECT EXCEPT CASE WHEN THEN ELSE END LIKE BETWEEN EXISTS ASC DESC WITH COUNT SUM AVG MIN MAX CAST'.split(' '));
const history = [];
let databases = [];

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = sessionStorage.getItem('sqlora-key');
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}

async function api(path, body) {
  const res = await fetch(path, body === undefined ? { headers: headers() } : { method: 'POST', headers: headers(), body: JSON.stringify(body) });
  if (res.status === 401) { $('key').style.display = 'inline-block'; throw new Error('this server needs an API key: enter it above'); }
  const data = await res.json();
  if (!res.ok) throw new Error((data.error && data.error.message) || ('HTTP ' + res.status));
  return data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function highlight(target, sql) {
  target.replaceChildren();
  const re = /('(?:[^']|'')*'|"(?:[^"]|"")*"|\\b\\d+(?:\\.\\d+)?\\b|\\b[A-Za-z_][A-Za-z0-9_]*\\b|\\s+|.)/g;
  for (const m of sql.matchAll(re)) {
    const t = m[0];
    let cls = null;
    if (t[0] === "'") cls = 'str';
    else if (/^\\d/.test(t)) cls = 'num';
    else if (KEYWORDS.has(t.toUpperCase())) cls = 'kw';
    target.append(cls ? el('span', t, cls) : document.createTextNode(t));
  }
}

function showTables() {
  const db = databases.find((d) => d.name === $('db').value);
  const box = $('tables');
  box.replaceChildren();
  if (!db) return;
  for (const t of db.tables) {
    const d = el('details');
    d.append(el('summary', t.name));
    const ul = el('ul');
    for (const c of t.columns) ul.append(el('li', c.name + (c.type ? ' ' + c.type : '') + (c.primary_key ? ' (key)' : '')));
    d.append(ul);
    box.append(d);
  }
}

function showResult(entry) {
  highlight($('sql'), entry.sql || '');
  const status = $('status');
  const table = $('result');
  table.replaceChildren();
  status.className = '';
  if (entry.error) {
    status.textContent = entry.error;
    status.className = 'error';
    return;
  }
  const r = entry.result;
  status.textContent = r.row_count + ' row' + (r.row_count === 1 ? '' : 's') + (r.truncated ? ' (first ' + r.rows.length + ' shown)' : '') + ' in ' + r.elapsed_ms + ' ms';
  const head = el('tr');
  for (const c of r.columns) head.append(el('th', c));
  const thead = el('thead');
  thead.append(head);
  const tbody = el('tbody');
  for (const row of r.rows) {
    const tr = el('tr');
    for (const v of row) tr.append(el('td', v === null ? 'NULL' : String(v)));
    tbody.append(tr);
  }
  table.append(thead, tbody);
}

function showHistory() {
  const ol = $('history-list');
  ol.replaceChildren();
  history.forEach((h, i) => {
    const li = el('li', h.question);
    li.append(el('small', h.db + (h.error ? ' · error' : ' · ' + h.result.row_count + ' rows')));
    li.addEventListener('click', () => showResult(history[i]));
    ol.append(li);
  });
}

async function ask(ev) {
  ev.preventDefault();
  const question = $('question').value.trim();
  const db = $('db').value;
  if (!question || !db) return;
  $('ask').disabled = true;
  $('status').className = '';
  $('status').textContent = 'generating SQL…';
  try {
    const r = await api('/v1/sql', { db, question });
    const entry = { db, question, sql: r.sql, error: r.error, result: r.error ? null : r };
    history.unshift(entry);
    showResult(entry);
    showHistory();
  } catch (err) {
    $('status').className = 'error';
    $('status').textContent = err.message;
  } finally {
    $('ask').disabled = false;
  }
}

async function load() {
  try {
    databases = (await api('/v1/databases')).data;
    const sel = $('db');
    sel.replaceChildren();
    for (const d of databases) sel.append(new Option(d.name + ' (' + d.dialect + ')', d.name));
    showTables();
    $('status').textContent = databases.length ? '' : 'no databases are served';
  } catch (err) {
    $('status').className = 'error';
    $('status').textContent = err.message;
  }
}

$('db').addEventListener('change', showTables);
$('form').addEventListener('submit', ask);
$('key').addEventListener('change', () => { sessionStorage.setItem('sqlora-key', $('key').value); load(); });
load();
`;

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sqlora</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>sqlora</h1>
  <label>Database <select id="db" aria-label="database"></select></label>
  <input id="key" type="password" placeholder="API key" aria-label="API key">
</header>
<main>
  <aside><h2>Tables</h2><div id="tables"></div></aside>
  <section>
    <form id="form"><input id="question" autocomplete="off" placeholder="Ask a question about the database" aria-label="question"><button id="ask" type="submit">Ask</button></form>
    <h2 style="margin-top:16px">SQL</h2>
    <pre id="sql"></pre>
    <div id="status" role="status"></div>
    <table id="result"></table>
  </section>
  <aside id="history"><h2>History</h2><ol id="history-list"></ol></aside>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
