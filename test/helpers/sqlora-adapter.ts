/**
 * The adapter sqlora writes for the PEFT round trip: a LoRA on a subset of projections with
 * rsLoRA and non-zero B, for the HF tiny `gqa` model. `tools/reference/peft_load_check.py`
 * loads the committed copy with PEFT and records PEFT's logits next to it.
 */
import { PROJECTIONS } from '../../src/model/qwen2-linear.js';
import { initLora, type HostLora } from '../../src/lora/lora.js';
import { loadModelConfig } from '../../src/model/config.js';
import { mulberry32 } from '../../src/util/random.js';

export function sqloraTestAdapter(modelDir: string): HostLora {
  const cfg = loadModelConfig(modelDir);
  const targets = PROJECTIONS.filter((p) => ['q_proj', 'v_proj', 'gate_proj', 'down_proj'].includes(p));
  const lora = initLora(cfg, { r: 4, alpha: 12, dropout: 0, targetModules: [...targets], useRslora: true }, 7);
  const rand = mulberry32(11);
  for (const [name, t] of Object.entries(lora.tensors)) {
    if (!name.includes('lora_B')) continue;
    const b = t.data as Float32Array;
    for (let i = 0; i < b.length; i++) b[i] = (2 * rand() - 1) * 0.05;
  }
  return lora;
}
