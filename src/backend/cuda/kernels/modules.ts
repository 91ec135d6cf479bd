/**
 * Every CUDA kernel module, by the name of its exported constant: the list the checks that run
 * without a GPU (test/backend-cuda-*.test.ts) and tools/kernel-size.ts go through.
 */
import type { KernelModule } from '../device.js';
import { ATTENTION } from './attention.js';
import { ATTENTION_SCORES } from './attention-scores.js';
import { DECODE } from './decode.js';
import { ELEMENTWISE } from './elementwise.js';
import { FLASH_ATTENTION } from './flash-attention.js';
import { LORA } from './lora.js';
import { ROWS } from './rows.js';

export const KERNEL_MODULES: Readonly<Record<string, KernelModule>> = {
  ATTENTION,
  ATTENTION_SCORES,
  DECODE,
  ELEMENTWISE,
  FLASH_ATTENTION,
  LORA,
  ROWS,
};
