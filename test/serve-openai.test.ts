/**
 * The OpenAI-compatible routes through the official `openai` client: models, chat and text
 * completions, streaming and not, stop strings, seeds, and concurrent requests, each answer
 * equal to generate() on the same prompt alone (greedy).
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../src/model/generate.js';
import { serveTinyModel, type ServedModel } from './helpers/serve-fixture.js';

let s: ServedModel;
let client: OpenAI;
beforeAll(async () => {
  s = await serveTinyModel({ apiKey: 'test-key', maxBatch: 4 });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'test-key', maxRetries: 0 });
});
afterAll(async () => {
  await s.server.shutdown();
});

/** The greedy answer generate() gives the prompt text alone, and its finish reason. */
async function alone(text: string, maxTokens: number): Promise<{ text: string; finish: string; ids: number[] }> {
  const ids = s.tokenizer.encode(text);
  const [g] = await generate(s.model, [ids], { maxNewTokens: maxTokens, stopIds: s.stopIds, padId: 0, batchSize: 1 });
  const body = g.finishReason === 'stop' ? g.newIds.slice(0, -1) : g.newIds;
  return { text: s.tokenizer.decode(body), finish: g.finishReason, ids: g.newIds };
}

const chatPrompt = (content: string): string =>
  s.template.render([{ role: 'user', content }], { addGenerationPrompt: true });

describe('OpenAI-compatible API', () => {
  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-chat']);
  });

  it('chat completions equal generate() alone, streaming and not, eight at once', async () => {
    const questions = Array.from({ length: 8 }, (_, i) => `How many singers ${'are there '.repeat(i)}?`);
    const want = await Promise.all(questions.map((q, i) => alone(chatPrompt(q), 6 + 3 * i)));
    const plain = questions.map((q, i) =>
      client.chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: q }],
        max_tokens: 6 + 3 * i,
        temperature: 0,
      }),
    );
    const streamed = questions.map(async (q, i) => {
      const stream = await client.chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: q }],
        max_tokens: 6 + 3 * i,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finish: string | null = null;
      let usage = null;
      let role = null;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        const c = chunk.choices[0];
        if (!c) continue;
        expect(chunk.object).toBe('chat.completion.chunk');
        role ??= c.delta.role ?? null;
        text += c.delta.content ?? '';
        finish = c.finish_reason ?? finish;
      }
      return { text, finish, usage, role };
    });
    const [a, b] = await Promise.all([Promise.all(plain), Promise.all(streamed)]);
    questions.forEach((_, i) => {
      expect(a[i].choices[0].message.content, `plain ${i}`).toBe(want[i].text);
      expect(a[i].choices[0].finish_reason).toBe(want[i].finish);
      expect(a[i].usage?.completion_tokens).toBe(want[i].ids.length);
      expect(a[i].usage?.prompt_tokens).toBe(s.tokenizer.encode(chatPrompt(questions[i])).length);
      expect(b[i].text, `stream ${i}`).toBe(want[i].text);
      expect(b[i].finish).toBe(want[i].finish);
      expect(b[i].role).toBe('assistant');
      expect(b[i].usage?.completion_tokens).toBe(want[i].ids.length);
    });
  });

  it('text completions, with a stop string cutting the answer in both modes', async () => {
    const prompt = 'SELECT count(*) FROM';
    const want = await alone(prompt, 24);
    const r = await client.completions.create({ model: 'tiny-chat', prompt, max_tokens: 24, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text).toBe(want.text);
    // A stop string from the middle of the answer: the text ends just before it.
    expect(want.text.length).toBeGreaterThan(10);
    const stop = want.text.slice(6, 8);
    const cut = want.text.slice(0, want.text.indexOf(stop));
    const stopped = await client.completions.create({
      model: 'tiny-chat',
      prompt,
      max_tokens: 24,
      temperature: 0,
      stop,
    });
    expect(stopped.choices[0].text).toBe(cut);
    expect(stopped.choices[0].finish_reason).toBe('stop');
    const stream = await client.completions.create({
      model: 'tiny-chat',
      prompt,
      max_tokens: 24,
      temperature: 0,
      stop: ['\u0000never', stop],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(cut);
  });

  it('samples reproducibly with a seed', async () => {
    const ask = (seed: number) =>
      client.chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'list the stadiums' }],
        max_tokens: 16,
        temperature: 1.3,
        top_p: 0.95,
        seed,
      });
    const [x, y, z] = await Promise.all([ask(7), ask(7), ask(8)]);
    expect(x.choices[0].message.content).toBe(y.choices[0].message.content);
    expect(z.choices[0].message.content).not.toBe(x.choices[0].message.content);
  });

  it('refuses a wrong key, bad fields and too many tokens with OpenAI errors', async () => {
    const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
    await expect(
      client.chat.completions.create({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 5000,
      }),
    ).rejects.toMatchObject({ status: 400, code: 'invalid_field' });
    await expect(
      client.chat.completions.create({ model: 'tiny-chat', messages: [], max_tokens: 5 }),
    ).rejects.toMatchObject({ status: 400 });
    await expect(
      client.completions.create({ model: 'tiny-chat', prompt: 'x'.repeat(300), max_tokens: 100 }),
    ).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded' });
    // Without max_tokens, an answer gets what the context leaves (256 - 230 here).
    const long = await client.completions.create({ model: 'tiny-chat', prompt: 'x'.repeat(230), temperature: 0 });
    expect(long.usage?.prompt_tokens).toBe(230);
    expect(long.usage!.completion_tokens).toBeLessThanOrEqual(26);
    expect(long.usage!.completion_tokens).toBe((await alone('x'.repeat(230), 26)).ids.length);
  });
});
