/**
 * The sqlora -> PEFT direction of the adapter round trip: an adapter written by sqlora's PEFT
 * writer (committed in test/fixtures/sqlora-adapter/adapter/) was loaded by PEFT 0.21 with
 * PeftModel.from_pretrained (tools/reference/peft_load_check.py), and PEFT's logits on the HF
 * tiny batches equal sqlora's.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../src/backend/cpu/cpu-backend.js';
import { LoraAdapter } from '../src/lora/lora.js';
import { readPeftAdapter, writePeftAdapter } from '../src/lora/peft.js';
import { Qwen2Model } from '../src/model/qwen2.js';
import { SafetensorsFile } from '../src/tensor/safetensors.js';
import { sqloraTestAdapter } from './helpers/sqlora-adapter.js';
import { maxAbsDiff, modelDir, readReference } from './helpers/tiny-fixture.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'sqlora-adapter');

describe('an adapter written by sqlora, loaded by PEFT', () => {
  it('is what sqlora writes today (so the PEFT check below applies to the current writer)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sqlora-adapter-'));
    writePeftAdapter(dir, sqloraTestAdapter(modelDir('gqa')), { baseModelNameOrPath: 'test/fixtures/tiny/gqa/model' });
    for (const f of ['adapter_config.json', 'adapter_model.safetensors']) {
      expect(readFileSync(join(dir, f)).equals(readFileSync(join(FIXTURE, 'adapter', f))), f).toBe(true);
    }
  });

  it('gives the logits PEFT computed with it, right and left padded, within 1e-4', () => {
    const be = new CpuBackend();
    const model = Qwen2Model.load(modelDir('gqa'), be);
    model.setLora(LoraAdapter.upload(be, model.config, readPeftAdapter(join(FIXTURE, 'adapter'), model.config)));
    const ref = readReference('gqa');
    const peftLogits = SafetensorsFile.open(join(FIXTURE, 'peft_logits.safetensors'));
    for (const side of ['right', 'left'] as const) {
      const [B, T] = ref.shape(`${side}.input_ids`);
      const mask = ref.ints(`${side}.attention_mask`);
      const logits = be.download(
        model.forward({ batchSize: B, seqLen: T, inputIds: ref.ints(`${side}.input_ids`), attentionMask: mask }),
      );
      const V = model.config.vocabSize;
      const expected = peftLogits.readF32(`${side}.logits`);
      // Padding positions are not compared: their values depend on masking conventions only.
      expect(
        maxAbsDiff(logits, expected, (i) => mask[Math.floor(i / V)] === 1),
        side,
      ).toBeLessThan(1e-4);
      expect(
        maxAbsDiff(logits, ref.floats(`${side}.logits`), (i) => mask[Math.floor(i / V)] === 1),
        `${side}: the adapter matters`,
      ).toBeGreaterThan(1e-3);
    }
    peftLogits.close();
  });
});
