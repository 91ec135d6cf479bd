/** The name serve gives the model in /v1/models when --name is not given. */
import { describe, expect, it } from 'vitest';
import { servedName } from '../src/cli/commands/serve.js';

describe('serve: default model name', () => {
  it("names train's RUN/adapter by its run folder, as export names its files; other folders by their own name", () => {
    expect(servedName('runs/sql-1.8b/adapter', 'Qwen/Qwen1.5-1.8B-Chat')).toBe('sql-1.8b');
    expect(servedName('runs/train/adapter/', 'x')).toBe('train');
    expect(servedName('runs/train/checkpoint-100', 'x')).toBe('checkpoint-100');
    expect(servedName(undefined, 'Qwen/Qwen1.5-1.8B-Chat')).toBe('Qwen/Qwen1.5-1.8B-Chat');
  });
});
