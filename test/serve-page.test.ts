/**
 * The web page end to end in headless Chromium (Debian's chromium + playwright-core): it lists
 * the served databases and their tables, a typed question comes back as highlighted SQL and a
 * result table (cells asserted), a refused statement shows its error, and the history keeps
 * both and shows an earlier answer again. The page loads nothing from outside. A screenshot is
 * kept in the test's temporary folder. Skips, saying why, where chromium is missing.
 */
import { copyFileSync, existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../src/serve/database.js';
import { openDatabase } from '../src/serve/databases.js';
import { serveTinyModel, type ServedModel } from './helpers/serve-fixture.js';
import { databaseFile, readTaught } from './helpers/sql-toy-model.js';

const CHROMIUM = '/usr/bin/chromium';
const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed (apt-get install chromium)`;
if (missing) console.warn(`serve-page: skipping, ${missing}`);

const taught = readTaught();
const tmp = mkdtempSync(join(tmpdir(), 'sqlora-serve-page-'));
let dbs: SqlDatabase[] = [];
let s: ServedModel;
let browser: Browser;

describe.skipIf(missing !== null)('the web page in headless Chromium', () => {
  beforeAll(async () => {
    for (const name of [taught.database, 'pets_1']) {
      const path = join(tmp, `${name}.sqlite`);
      copyFileSync(databaseFile(name), path);
      dbs.push(await openDatabase(name, path));
    }
    s = await serveTinyModel({
      sqlToy: true,
      contextTokens: 1024,
      apiKey: 'page-test-key',
      databases: new Map(dbs.map((d) => [d.name, d])),
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-background-networking'],
      headless: true,
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await s?.server.shutdown();
    await Promise.all(dbs.map((d) => d.close()));
    dbs = [];
  });

  it('asks a question and shows the SQL, the result table and the history', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    const outside: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(s.url)) outside.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(s.url + '/');
    // The server wants a key: the page asks for it, then lists the databases.
    await page.locator('#key').waitFor({ state: 'visible' });
    await page.fill('#key', 'page-test-key');
    await page.locator('#key').dispatchEvent('change');
    await expect
      .poll(() => page.locator('#db option').allTextContents())
      .toEqual(['concert_singer (sqlite)', 'pets_1 (sqlite)']);
    expect(await page.locator('#tables summary').allTextContents()).toEqual([
      'stadium',
      'singer',
      'concert',
      'singer_in_concert',
    ]);
    await page.selectOption('#db', 'pets_1');
    expect(await page.locator('#tables summary').allTextContents()).toEqual(['Student', 'Has_Pet', 'Pets']);
    await page.selectOption('#db', 'concert_singer');

    await page.fill('#question', 'Names of singers from France?');
    await page.click('#ask');
    await page.locator('#result tbody tr').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('#sql').textContent()).toBe("SELECT Name FROM singer WHERE Country = 'France'");
    expect(await page.locator('#sql .kw').allTextContents()).toEqual(['SELECT', 'FROM', 'WHERE']);
    expect(await page.locator('#sql .str').allTextContents()).toEqual(["'France'"]);
    expect(await page.locator('#result th').allTextContents()).toEqual(['Name']);
    expect(await page.locator('#result td').allTextContents()).toEqual([
      'Justin Brown',
      'Rose White',
      'John Nizinik',
      'Tribal King',
    ]);
    expect(await page.locator('#status').textContent()).toMatch(/^4 rows in [\d.]+ ms$/);
    const shot = join(tmp, 'serve-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(5000);

    await page.fill('#question', 'Delete all singers');
    await page.click('#ask');
    await page.locator('#status.error').waitFor({ timeout: 30_000 });
    expect(await page.locator('#sql').textContent()).toBe('DELETE FROM singer');
    expect(await page.locator('#result td').count()).toBe(0);
    expect(await page.locator('#history li').count()).toBe(2);
    expect(await page.locator('#history li').first().textContent()).toContain('Delete all singers');

    // An earlier answer comes back from the history.
    await page.locator('#history li').nth(1).click();
    expect(await page.locator('#result td').allTextContents()).toHaveLength(4);
    expect(outside).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});
