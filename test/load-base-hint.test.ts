/** loadModel's error when the adapter's base_model_name_or_path is neither a folder here nor in the Hub cache. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/api/load.js';

const tmp = mkdtempSync(join(tmpdir(), 'sqlora-load-hint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('loadModel without --model', () => {
  it('names the adapter config and says to pass --model for a relative base folder read from elsewhere', async () => {
    const adapter = join(tmp, 'adapter');
    cpSync('test/fixtures/tiny/gqa/adapter', adapter, { recursive: true });
    const cfgPath = join(adapter, 'adapter_config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, base_model_name_or_path: 'sqlora-demo/model' }));
    const saved = { offline: process.env.HF_HUB_OFFLINE, home: process.env.HF_HOME };
    process.env.HF_HUB_OFFLINE = '1';
    process.env.HF_HOME = join(tmp, 'hf');
    try {
      await expect(loadModel({ adapter, device: 'cpu', quiet: true })).rejects.toThrow(
        `(the base model named by ${adapter}/adapter_config.json; if it is a local folder, pass --model DIR)`,
      );
    } finally {
      for (const [k, v] of [
        ['HF_HUB_OFFLINE', saved.offline],
        ['HF_HOME', saved.home],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });
});
