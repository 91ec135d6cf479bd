/** Repeatable flags (serve's --db): every value in order, from the command line or a config array. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCommandArgs, type CommandSpec } from '../src/cli/args.js';

const spec: CommandSpec = {
  name: 'serve',
  summary: 'test',
  usage: '',
  flags: [
    { name: 'db', type: 'string', repeatable: true, description: 'databases' },
    { name: 'port', type: 'number', default: 8000, description: 'port' },
  ],
  run: () => {},
};

describe('repeatable flags', () => {
  it('collects every value in order; a config array is used when the command line gives none', () => {
    const cli = parseCommandArgs(spec, ['--db', 'a=x.sqlite', '--port', '1', '--db=b=postgres://h/db?x=1']);
    expect(cli.strings('db')).toEqual(['a=x.sqlite', 'b=postgres://h/db?x=1']);
    expect(parseCommandArgs(spec, []).strings('db')).toEqual([]);
    const config = join(mkdtempSync(join(tmpdir(), 'sqlora-args-')), 'c.json');
    writeFileSync(config, JSON.stringify({ serve: { db: ['c=c.sqlite', 'd=d.sqlite'] } }));
    expect(parseCommandArgs(spec, ['--config', config]).strings('db')).toEqual(['c=c.sqlite', 'd=d.sqlite']);
    expect(parseCommandArgs(spec, ['--config', config, '--db', 'e=e.sqlite']).strings('db')).toEqual(['e=e.sqlite']);
    writeFileSync(config, JSON.stringify({ db: 'f=f.sqlite' }));
    expect(parseCommandArgs(spec, ['--config', config]).strings('db')).toEqual(['f=f.sqlite']);
    expect(() => parseCommandArgs(spec, ['--db'])).toThrow(/--db needs a value/);
  });
});
