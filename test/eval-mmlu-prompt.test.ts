import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/data/tokenizer.js';
import { readMmlu, selectQuestions } from '../src/eval/mmluData.js';
import { encodePair, encodeQuestion, mmluContext, pythonStrip, scoredSequence } from '../src/eval/mmluPrompt.js';

const FIX = join(import.meta.dirname, 'fixtures', 'mmlu');
const letters = Tokenizer.fromModelDir(join(FIX, 'model-letters'));
const bytes = Tokenizer.fromModelDir(join(FIX, 'model-bytes'));

describe("prompts in lm-evaluation-harness's mmlu format", () => {
  it('0-shot: description, the stripped question, the choices as they are, "Answer:"', async () => {
    const set = await readMmlu(join(FIX, 'csv'));
    expect(mmluContext(set.test.get('abstract_algebra')![0], [])).toBe(
      'The following are multiple choice questions (with answers) about abstract algebra.\n\n' +
        'Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:',
    );
    // The file's question starts with a space; the harness strips it.
    expect(mmluContext(set.test.get('marketing')![1], [])).toBe(
      'The following are multiple choice questions (with answers) about marketing.\n\n' +
        '_____________is an important element in the communication process. It recognizes that successful communications are more likely to be achieved if the source and the receiver understand each other.\n' +
        'A. The realm of understanding.\nB. Personal selling.\nC. Noise.\nD. Feedback.\nAnswer:',
    );
  });

  it('5-shot: the first five dev questions with " {letter}", each followed by a blank line', async () => {
    const set = await readMmlu(join(FIX, 'csv'));
    const { questions, fewShot } = selectQuestions(set, { shots: 5, subjects: ['world_religions'], limit: 1 });
    expect(mmluContext(questions[0], fewShot.get('world_religions')!)).toBe(
      'The following are multiple choice questions (with answers) about world religions.\n\n' +
        'What is the sign of the covenant for Jewish males?\nA. The rainbow\nB. Circumcision\nC. A son\nD. Bar mitzvah\nAnswer: B\n\n' +
        'What is the Second Gem in Buddhism?\nA. The Dharma\nB. The Sangha\nC. The Buddha\nD. The Bodhisattva\nAnswer: A\n\n' +
        'In which dynasty was the "Mandate of Heaven" developed to legitimatize the new rulers?\nA. Shang\nB. Zhou\nC. Han\nD. Xia\nAnswer: B\n\n' +
        'Which Japanese government promoted a kind of national cult based on the emperor and his associations with kami?\nA. Honen\nB. Tanaka\nC. Tokugawa\nD. Meiji\nAnswer: D\n\n' +
        'How can the Upanishads be characterized?\nA. Ritual texts\nB. Philosophical texts\nC. Hymns\nD. Origin stories\nAnswer: B\n\n' +
        'What can murtis be translated as?\nA. Offerings\nB. Prayers\nC. Apparitions\nD. Idols\nAnswer:',
    );
  });

  it("strips what Python's str.strip() strips, and only that", () => {
    expect(pythonStrip('\u00a0\t Q?\n\u2003\x1c\x85')).toBe('Q?');
    expect(pythonStrip('\ufeffQ?')).toBe('\ufeffQ?');
    const q = { subject: 'x_y', index: 0, question: ' \n Q? \n', choices: [' a', 'b ', 'c', 'd'], answer: 0 } as const;
    expect(mmluContext({ ...q, choices: [...q.choices] }, [])).toBe(
      'The following are multiple choice questions (with answers) about x y.\n\nQ?\nA.  a\nB. b \nC. c\nD. d\nAnswer:',
    );
  });
});

describe("the harness's request tokenization", () => {
  it('continuations: one token with the letter merges, the whole string cut after the context otherwise', () => {
    const ctx = 'about x.\n\nQ?\nA. a\nAnswer:';
    const one = encodePair(letters, ctx, ' B');
    expect(one.context).toEqual(letters.encode(ctx));
    expect(one.continuation).toEqual([letters.tokenId('ĠB')]);
    const two = encodePair(bytes, ctx, ' B');
    expect(two.continuation).toEqual([bytes.tokenId('Ġ'), bytes.tokenId('B')]);
    expect(bytes.encode(' B')).toHaveLength(2);
  });

  it("moves the context's trailing whitespace to the continuation", () => {
    const p = encodePair(bytes, 'Answer: ', 'B');
    expect(p.context).toEqual(bytes.encode('Answer:'));
    expect(p.continuation).toEqual(bytes.encode(' B'));
  });

  it('takes the continuation from the whole string even where the context alone tokenizes differently', () => {
    // "Answe" is a token of its own; in "Answers" the merges run on to "Answer" + "s". The harness
    // keeps the context's own tokens and takes the whole string's tokens after their count.
    const p = encodePair(letters, 'Answe', 'rs');
    expect(letters.encode('Answers')).toEqual([letters.tokenId('Answer'), letters.tokenId('s')]);
    expect(p.context).toEqual([letters.tokenId('Answe')]);
    expect(p.continuation).toEqual([letters.tokenId('s')]);
    expect(encodePair(letters, 'Answe', 'r').continuation).toEqual([]);
  });

  it('cuts what the model reads to the last max_length + 1 tokens, minus the last', () => {
    const pair = { context: [1, 2, 3, 4, 5, 6], continuation: [7, 8] };
    expect(scoredSequence(pair, 100)).toEqual({ input: [1, 2, 3, 4, 5, 6, 7], continuation: [7, 8] });
    expect(scoredSequence(pair, 4)).toEqual({ input: [4, 5, 6, 7], continuation: [7, 8] });
  });

  it('marks a question single-token only where all four continuations are one token', async () => {
    const set = await readMmlu(join(FIX, 'csv'));
    const q = set.test.get('anatomy')![0];
    expect(encodeQuestion(letters, q, []).singleToken).toBe(true);
    expect(encodeQuestion(bytes, q, []).singleToken).toBe(false);
    const enc = encodeQuestion(letters, q, []);
    expect(enc.pairs.map((p) => p.continuation[0])).toEqual(['ĠA', 'ĠB', 'ĠC', 'ĠD'].map((t) => letters.tokenId(t)));
  });
});
