/**
 * A tiny chat model that answers every question with one fixed SQL statement, for end-to-end
 * tests of `ask` and `serve` through the real engine (tokenizer, chat template, Qwen2 forward,
 * greedy decoding, stop tokens). Its layers add nothing to the residual stream (o_proj and
 * down_proj are zero), so each logit depends on the current token alone: the embedding puts each
 * token of the answer chain on its own axis and lm_head maps that axis to the next token. The
 * generation prompt ends with "\n", whose successor is the answer's first token; the last one's
 * is `<|im_end|>`. A chain needs every token but the last to be distinct: the answer's spaces
 * are written as different whitespace characters (space, tab, vertical tab, form feed), which
 * the SQL extraction collapses back to spaces.
 */
import { Tokenizer } from '../../src/data/tokenizer.js';
import { initLora } from '../../src/lora/lora.js';
import { writePeftAdapter } from '../../src/lora/peft.js';
import { expectQwen2Tensors, saveCheckpoint } from '../../src/model/checkpoint.js';
import { loadModelConfig } from '../../src/model/config.js';
import { f32Tensor } from '../../src/tensor/tensor.js';
import { randomWeights, tinyConfig } from './random-qwen2.js';
import { writeTinyChatModel } from './tiny-chat-model.js';

const SPACES = [' ', '\t', '\v', '\f'];

export function writeAnswerModel(dir: string, answer: string): void {
  const tiny = writeTinyChatModel(dir);
  const tokenizer = Tokenizer.fromModelDir(dir);
  let gap = 0;
  const spelled = answer.replace(/ /g, () => SPACES[gap++] ?? ' ');
  const chain = [...tokenizer.encode('\n'), ...tokenizer.encode(spelled), tiny.ids.imEnd];
  const from = chain.slice(0, -1);
  if (new Set(from).size !== from.length) throw new Error(`"${answer}" repeats a token: it cannot be a chain`);
  const cfg = tinyConfig({ vocab_size: tiny.vocabSize, eos_token_id: tiny.ids.imEnd, max_position_embeddings: 8192 });
  if (from.length > cfg.hiddenSize) throw new Error(`"${answer}" has more tokens than the model has dimensions`);
  const weights = randomWeights(cfg, 1);
  const h = cfg.hiddenSize;
  for (const [name, w] of weights) {
    if (/o_proj|down_proj/.test(name) || name === 'lm_head.weight') w.fill(0);
    if (name === 'model.norm.weight') w.fill(1);
  }
  const embed = weights.get('model.embed_tokens.weight')!;
  const head = weights.get('lm_head.weight')!;
  from.forEach((id, axis) => {
    embed.fill(0, id * h, (id + 1) * h);
    embed[id * h + axis] = 1;
    head[chain[axis + 1] * h + axis] = 10;
  });
  const specs = expectQwen2Tensors(cfg).filter((s) => !s.optional);
  saveCheckpoint(dir, cfg, Object.fromEntries(specs.map((s) => [s.name, f32Tensor(s.shape, weights.get(s.name)!)])));
}

/** A PEFT adapter for the model (LoRA on q and v, B = 0 as initialized), naming it as base unless `base` is null. */
export function writeAnswerAdapter(dir: string, modelDir: string, base: string | null = modelDir): void {
  const lora = initLora(
    loadModelConfig(modelDir),
    { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false },
    7,
  );
  writePeftAdapter(dir, lora, { baseModelNameOrPath: base });
}
