/**
 * What the model commands (train, generate, baseline, eval) share: the --device and --quantize
 * flags, and (from src/api/load.ts) loading a model with its tokenizer and optional adapter.
 */
import { QUANTIZE } from '../../api/load.js';
import { DEVICES } from '../../backend/select.js';
import type { FlagSpec } from '../args.js';

// The loading itself is library code (src/api/load.ts); these names stay importable from here.
export {
  decodeBatchSize,
  END_OF_TURN,
  loadModel,
  QUANTIZE,
  type LoadedModel,
  type LoadModelOptions,
} from '../../api/load.js';

export function deviceFlag(): FlagSpec {
  return {
    name: 'device',
    type: 'string',
    metavar: 'DEVICE',
    choices: DEVICES,
    default: 'auto',
    description: 'where the model runs: auto = an NVIDIA GPU when one is found, else the CPU',
  };
}

export function quantizeFlag(dflt: (typeof QUANTIZE)[number]): FlagSpec {
  return {
    name: 'quantize',
    type: 'string',
    metavar: 'MODE',
    choices: QUANTIZE,
    default: dflt,
    description: "store the base model's layer projections as NF4 (QLoRA) or keep them dense",
  };
}
