import type { CommandSpec } from '../args.js';
import { PREDICT_DETAILS, predictFlags, runPredict } from './predict.js';

export const command: CommandSpec = {
  name: 'eval',
  summary: 'base + adapter -> SQL predictions + metrics; compare with the baseline',
  usage: '--adapter DIR [--model DIR|HUB_ID] [--data DIR] [--out DIR] [--compare FILE] [flags]',
  flags: predictFlags('eval'),
  details:
    PREDICT_DETAILS +
    '\nExample:\n  sqlora eval --adapter runs/train/adapter --data data --spider spider --compare runs/baseline/results.json',
  run: (args) => runPredict(args, 'eval'),
};
