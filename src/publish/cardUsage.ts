/**
 * The model card's usage section: Python PEFT with the trained prompt's messages, sqlora, and,
 * when the repo carries them, the merged folder (transformers, vLLM) and the GGUF (llama.cpp,
 * Ollama with the Modelfile).
 */
import type { ModelCardInputs } from './modelCard.js';
import { SPIDER } from './cardDataset.js';

/** The repo's name without its owner. */
export function modelName(repo: string): string {
  return repo.split('/')[1];
}

/** A fenced code block whose fence is longer than any backtick run inside. */
export function fence(text: string, lang = ''): string {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((x) => x[0].length));
  const f = '`'.repeat(longest + 1);
  return `${f}${lang}\n${text.replace(/\n$/, '')}\n${f}`;
}

/** The Python snippets' last lines: the greedy reply to `messages` from `model` and `tokenizer`. */
const GREEDY_REPLY_PY = [
  'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt").to(model.device)',
  'output = model.generate(inputs, max_new_tokens=128, do_sample=False)',
  'print(tokenizer.decode(output[0][inputs.shape[1]:], skip_special_tokens=True))',
];

export function usageSection(inp: ModelCardInputs): string {
  const msgs = inp.example?.record.messages.filter((m) => m.role !== 'assistant') ?? [];
  const py = (s: string): string => JSON.stringify(s);
  // Without an example the card cannot know the training format: it says so instead of guessing one.
  const messages =
    msgs.length > 0
      ? `messages = [\n${msgs.map((m) => `    {"role": ${py(m.role)}, "content": ${py(m.content)}},`).join('\n')}\n]`
      : 'messages = [...]  # the system and user messages of the training format (sqlora prepare)';
  const python = [
    'from peft import AutoPeftModelForCausalLM',
    'from transformers import AutoTokenizer',
    '',
    `model = AutoPeftModelForCausalLM.from_pretrained(${py(inp.repo)}, device_map="auto")`,
    `tokenizer = AutoTokenizer.from_pretrained(${py(inp.baseModel)})`,
    '',
    messages,
    ...GREEDY_REPLY_PY,
  ].join('\n');
  const { evalUsage } = inp.datasets?.eval ?? SPIDER;
  const sh = [
    `huggingface-cli download ${inp.repo} --local-dir ${modelName(inp.repo)}`,
    evalUsage.comment,
    `sqlora eval --model ${inp.baseModel} --adapter ${modelName(inp.repo)} --data data${evalUsage.flags} --out runs/eval`,
    '# SQL for your own prompts: one {"prompt": "<the rendered chat prompt>"} per line',
    `sqlora generate --model ${inp.baseModel} --adapter ${modelName(inp.repo)} --prompts prompts.jsonl`,
  ].join('\n');
  return (
    [
      '## Usage',
      '',
      '### Python (PEFT)',
      '',
      fence(python, 'python'),
      '',
      ...mergedUsage(inp, messages),
      '### sqlora',
      '',
      fence(sh, 'sh'),
      '',
      'sqlora runs the same adapter on an NVIDIA GPU or the CPU, with the base in NF4 (`--quantize nf4`) or its own precision.',
      ...ggufUsage(inp, msgs.find((m) => m.role === 'system')?.content, msgs.find((m) => m.role === 'user')?.content),
    ].join('\n') + '\n'
  );
}

function mergeSource(fromNf4: boolean): string {
  return fromNf4
    ? 'merged into the NF4-dequantized base weights the adapter was trained against'
    : "merged into the base model's original (unquantized) weights";
}

function mergedUsage(inp: ModelCardInputs, messages: string): string[] {
  const m = inp.exports?.merged;
  if (!m) return [];
  const at = `${JSON.stringify(inp.repo)}, subfolder=${JSON.stringify(m.folder)}`;
  const py = [
    'from transformers import AutoModelForCausalLM, AutoTokenizer',
    '',
    `model = AutoModelForCausalLM.from_pretrained(${at}, device_map="auto")`,
    `tokenizer = AutoTokenizer.from_pretrained(${at})`,
    '',
    messages,
    ...GREEDY_REPLY_PY,
  ].join('\n');
  const dir = modelName(inp.repo);
  const sh = [
    `huggingface-cli download ${inp.repo} --include "${m.folder}/*" --local-dir ${dir}`,
    `vllm serve ${dir}/${m.folder}`,
  ].join('\n');
  return [
    `### transformers or vLLM, without PEFT (\`${m.folder}/\`)`,
    '',
    `\`${m.folder}/\` is the adapter ${mergeSource(m.fromNf4)}, stored in ${m.dtype}.`,
    '',
    fence(py, 'python'),
    '',
    fence(sh, 'sh'),
    '',
  ];
}

/** A shell single-quoted word. */
const shellWord = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

function ggufUsage(inp: ModelCardInputs, system: string | undefined, user: string | undefined): string[] {
  const g = inp.exports?.gguf;
  if (!g) return [];
  const tag = g.quant.toUpperCase();
  const dir = modelName(inp.repo);
  const question = shellWord(user ?? 'Database: concert_singer\nQuestion: How many singers do we have?');
  const sh = [
    '# llama.cpp (the GGUF carries the chat template)',
    `llama-cli -hf ${inp.repo}:${tag} --temp 0${system !== undefined ? ` -sys ${shellWord(system)}` : ''} -p ${question}`,
    `llama-server -hf ${inp.repo}:${tag}     # OpenAI-compatible API on :8080`,
    '# Ollama, with the Modelfile (system prompt, stop token)',
    `huggingface-cli download ${inp.repo} ${g.file} ${g.modelfile} --local-dir ${dir}`,
    `ollama create ${dir} -f ${dir}/${g.modelfile}`,
    `ollama run ${dir} ${question}`,
  ].join('\n');
  return [
    '',
    `### llama.cpp and Ollama (\`${g.file}\`)`,
    '',
    `\`${g.file}\` is the adapter ${mergeSource(g.fromNf4)}, quantized to ${tag} (${g.bytes >= 1e9 ? `${(g.bytes / 1e9).toFixed(2)} GB` : `${(g.bytes / 1e6).toFixed(1)} MB`}). ` +
      `\`${g.modelfile}\` gives Ollama the chat template, the system prompt the adapter was trained with and the end-of-turn stop.`,
    '',
    fence(sh, 'sh'),
  ];
}
