/**
 * Inputs that used to end in a stack trace (exit 70) give one line naming the file and exit 1:
 * a weights file that is a folder, `prepare --out` onto a file, an adapter of the wrong shape.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initLora } from '../../src/lora/lora.js';
import { writePeftAdapter } from '../../src/lora/peft.js';
import { loadModelConfig } from '../../src/model/config.js';
import { f32Tensor } from '../../src/tensor/tensor.js';
import { sqlora } from '../helpers/cli.js';
import { writeTinyChatModel } from '../helpers/tiny-chat-model.js';
import { expectRefused, snapshot } from './helpers.js';

let tmp: string;
let model: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sqlora-robust-errors-'));
  model = writeTinyChatModel(join(tmp, 'model')).dir;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('one line instead of a stack trace', () => {
  it('model.safetensors that is a folder', async () => {
    const broken = join(tmp, 'model-dir-weights');
    cpSync(model, broken, { recursive: true });
    rmSync(join(broken, 'model.safetensors'));
    mkdirSync(join(broken, 'model.safetensors'));
    const r = await sqlora('generate', [
      '--model',
      broken,
      '--prompt',
      'SELECT',
      '--device',
      'cpu',
      '--quantize',
      'none',
    ]);
    expectRefused(r, /model\.safetensors is not a file \(a safetensors file was expected there\)$/);
  });

  it('prepare --out onto a file leaves the file as it was', async () => {
    const file = join(tmp, 'out-file');
    writeFileSync(file, 'keep me');
    const before = snapshot(tmp);
    const r = await sqlora('prepare', ['--spider', 'test/fixtures/spider', '--out', file, '--model', model]);
    expectRefused(r, /--out \S+out-file is a file; give a folder for train\.jsonl, eval\.jsonl and dataset\.json$/);
    expect(snapshot(tmp)).toEqual(before);
  });

  it('an adapter tensor of the wrong shape names the file', async () => {
    const adapter = join(tmp, 'adapter');
    const config = loadModelConfig(model);
    const lora = initLora(config, { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj'], useRslora: false }, 1);
    const name = Object.keys(lora.tensors)[0];
    lora.tensors[name] = f32Tensor([3, 5], new Float32Array(15));
    writePeftAdapter(adapter, lora, { baseModelNameOrPath: model });
    const r = await sqlora('generate', [
      '--model',
      model,
      '--adapter',
      adapter,
      '--prompt',
      'SELECT',
      '--device',
      'cpu',
      '--quantize',
      'none',
    ]);
    expectRefused(
      r,
      new RegExp(
        `${adapter}/adapter_model\\.safetensors: adapter tensor ${name.replaceAll('.', '\\.')} has shape \\[3, 5\\], expected \\[`,
      ),
    );
  });
});
