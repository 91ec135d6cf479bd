/**
 * The --device and --quantize flags the model commands share (loading itself is src/api/load.ts).
 */
import { QUANTIZE } from '../../api/load.js';
import { DEVICES } from '../../backend/select.js';
import type { FlagSpec } from '../args.js';

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
