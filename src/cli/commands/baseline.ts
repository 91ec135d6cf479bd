import type { CommandSpec } from '../args.js';
import { PREDICT_DETAILS, predictFlags, runPredict } from './predict.js';

export const command: CommandSpec = {
  name: 'baseline',
  summary: 'base model -> SQL predictions + metrics on the eval split',
  usage: '[--model DIR|HUB_ID] [--data DIR] [--out DIR] [--spider DIR] [flags]',
  flags: predictFlags('baseline'),
  details:
    PREDICT_DETAILS +
    '\nExample:\n  sqlora baseline --model Qwen/Qwen1.5-1.8B-Chat --data data --spider spider --out runs/baseline',
  run: (args) => runPredict(args, 'baseline'),
};
