import { UserError } from '../util/errors.js';
import { readJsonFile } from '../util/jsonl.js';

export type FlagValue = string | number | boolean;

export interface FlagSpec {
  /** Long name in kebab-case, without the dashes. */
  name: string;
  type: 'string' | 'number' | 'boolean';
  description: string;
  default?: FlagValue;
  /** Placeholder shown in help, e.g. DIR or N. */
  metavar?: string;
  /** Allowed values for a string flag. */
  choices?: readonly string[];
  /** A string flag that may be given several times (read with ParsedArgs.strings; a config gives an array). */
  repeatable?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Usage line after `sqlora <name>`, e.g. `--spider DIR --out DIR [flags]`. */
  usage: string;
  flags: FlagSpec[];
  /** Extra help text printed after the flags. */
  details?: string;
  /** The one argument besides flags a command takes, if any (`sqlora ask ... "question"`). */
  positional?: { metavar: string; description: string };
  run(args: ParsedArgs): Promise<void> | void;
}

/** Flags every command accepts. */
export const COMMON_FLAGS: FlagSpec[] = [
  {
    name: 'config',
    type: 'string',
    metavar: 'FILE',
    description:
      'JSON config file; its keys are flag names (top level, or under the command name); flags on the command line win',
  },
  { name: 'help', type: 'boolean', description: 'show this help' },
];

export class ParsedArgs {
  constructor(
    readonly command: string,
    private readonly values: Map<string, FlagValue | undefined>,
    /** The command's positional argument (see CommandSpec.positional), when given. */
    readonly positional?: string,
    private readonly lists: Map<string, string[]> = new Map(),
  ) {}

  /** Every value of a repeatable flag, in order (empty when not given). */
  strings(name: string): string[] {
    if (!this.values.has(name)) throw new Error(`internal: flag --${name} is not declared by ${this.command}`);
    return this.lists.get(name) ?? [];
  }

  has(name: string): boolean {
    return this.values.get(name) !== undefined;
  }

  string(name: string): string | undefined {
    const v = this.get(name);
    return v === undefined ? undefined : String(v);
  }

  /** A string flag that must be given (on the command line or in the config). */
  required(name: string): string {
    const v = this.string(name);
    if (v === undefined || v === '')
      throw new UserError(`sqlora ${this.command}: --${name} is required (see sqlora ${this.command} --help)`);
    return v;
  }

  number(name: string): number | undefined {
    const v = this.get(name);
    return v === undefined ? undefined : (v as number);
  }

  boolean(name: string): boolean {
    return this.get(name) === true;
  }

  private get(name: string): FlagValue | undefined {
    if (!this.values.has(name)) throw new Error(`internal: flag --${name} is not declared by ${this.command}`);
    return this.values.get(name);
  }
}

function coerce(command: string, spec: FlagSpec, raw: unknown, where: string): FlagValue {
  if (spec.type === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new UserError(`sqlora ${command}: ${where} --${spec.name} expects true or false, got ${JSON.stringify(raw)}`);
  }
  if (spec.type === 'number') {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!Number.isFinite(n))
      throw new UserError(`sqlora ${command}: ${where} --${spec.name} expects a number, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (typeof raw !== 'string' && typeof raw !== 'number') {
    throw new UserError(`sqlora ${command}: ${where} --${spec.name} expects a string, got ${JSON.stringify(raw)}`);
  }
  const s = String(raw);
  if (spec.choices && !spec.choices.includes(s)) {
    throw new UserError(
      `sqlora ${command}: ${where} --${spec.name} must be one of ${spec.choices.join(', ')}; got ${JSON.stringify(s)}`,
    );
  }
  return s;
}

/**
 * Parses `argv` against a command's flags. Precedence: command line, then the config file's
 * section for this command, then its top level, then the flag's default.
 */
export function parseCommandArgs(spec: CommandSpec, argv: string[]): ParsedArgs {
  const all = [...spec.flags, ...COMMON_FLAGS];
  const byName = new Map(all.map((f) => [f.name, f]));
  const cli = new Map<string, FlagValue>();
  const cliLists = new Map<string, string[]>();
  let positional: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h') {
      cli.set('help', true);
      continue;
    }
    // Besides flags a command takes at most its one positional argument (after `--` it may start
    // with dashes): any other word is most likely a flag's value misplaced (--resume takes none),
    // which must not pass silently.
    const unexpected = (w: string) =>
      new UserError(`sqlora ${spec.name}: unexpected argument "${w}" (see sqlora ${spec.name} --help)`);
    let word: string | null = null;
    if (arg === '--') {
      if (!spec.positional || i + 1 >= argv.length) throw unexpected(arg);
      word = argv[++i];
    } else if (!arg.startsWith('--')) word = arg;
    if (word !== null) {
      if (!spec.positional) throw unexpected(word);
      // A second word is most often an unquoted question: say so.
      if (positional !== undefined)
        throw new UserError(
          `sqlora ${spec.name}: unexpected argument "${word}": ${spec.positional.metavar} is one argument, put it in quotes (see sqlora ${spec.name} --help)`,
        );
      positional = word;
      continue;
    }
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    let negated = false;
    if (!byName.has(name) && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean') {
      name = name.slice(3);
      negated = true;
    }
    const flag = byName.get(name);
    if (!flag) throw new UserError(`sqlora ${spec.name}: unknown flag --${name} (see sqlora ${spec.name} --help)`);
    if (flag.type === 'boolean') {
      cli.set(name, negated ? false : inline === undefined ? true : coerce(spec.name, flag, inline, 'flag'));
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (i + 1 >= argv.length) throw new UserError(`sqlora ${spec.name}: --${name} needs a value`);
      raw = argv[++i];
    }
    const value = coerce(spec.name, flag, raw, 'flag');
    if (flag.repeatable) cliLists.set(name, [...(cliLists.get(name) ?? []), String(value)]);
    cli.set(name, value);
  }

  const fromConfig = new Map<string, FlagValue>();
  const configLists = new Map<string, string[]>();
  /** A config value: a repeatable flag takes an array of strings (or one string). */
  const configValue = (flag: FlagSpec, v: unknown, where: string): FlagValue => {
    if (flag.repeatable) {
      const items = Array.isArray(v) ? (v as unknown[]) : [v];
      const list = items.map((x) => String(coerce(spec.name, flag, x, where)));
      configLists.set(flag.name, list);
      return list[0] ?? '';
    }
    return coerce(spec.name, flag, v, where);
  };
  const configPath = cli.get('config') as string | undefined;
  if (configPath !== undefined && !cli.get('help')) {
    const cfg = readJsonFile<Record<string, unknown>>(configPath, 'config file');
    if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg))
      throw new UserError(`config file ${configPath}: expected a JSON object`);
    for (const [k, v] of Object.entries(cfg)) {
      const flag = byName.get(k);
      if (flag && (v === null || typeof v !== 'object' || (flag.repeatable && Array.isArray(v))))
        fromConfig.set(k, configValue(flag, v, `config ${configPath}:`));
    }
    const section = cfg[spec.name];
    if (section !== undefined) {
      if (section === null || typeof section !== 'object' || Array.isArray(section))
        throw new UserError(`config file ${configPath}: "${spec.name}" must be an object of flags`);
      for (const [k, v] of Object.entries(section as Record<string, unknown>)) {
        const flag = byName.get(k);
        if (!flag)
          throw new UserError(`config file ${configPath}: "${spec.name}.${k}" is not a flag of sqlora ${spec.name}`);
        fromConfig.set(k, configValue(flag, v, `config ${configPath}:`));
      }
    }
  }

  const values = new Map<string, FlagValue | undefined>();
  const lists = new Map<string, string[]>();
  for (const f of all) {
    values.set(f.name, cli.get(f.name) ?? fromConfig.get(f.name) ?? f.default);
    const list = cliLists.get(f.name) ?? configLists.get(f.name);
    if (list) lists.set(f.name, list);
  }
  return new ParsedArgs(spec.name, values, positional, lists);
}

export function formatCommandHelp(spec: CommandSpec): string {
  const rows = [...spec.flags, ...COMMON_FLAGS].map((f) => {
    const left = `  --${f.name}${f.type === 'boolean' ? '' : ' ' + (f.metavar ?? (f.type === 'number' ? 'N' : 'VALUE'))}`;
    const def =
      f.default !== undefined && f.type !== 'boolean'
        ? ` (default: ${f.default})`
        : f.default === true
          ? ' (default: on; --no-' + f.name + ' turns it off)'
          : '';
    const choices = f.choices ? ` [${f.choices.join('|')}]` : '';
    return [left, f.description + choices + def] as const;
  });
  const width = Math.min(34, Math.max(...rows.map(([l]) => l.length)) + 2);
  const lines = rows.map(([l, r]) => (l.length >= width ? `${l}\n${' '.repeat(width)}${r}` : l.padEnd(width) + r));
  return (
    [
      `sqlora ${spec.name} — ${spec.summary}`,
      '',
      `usage: sqlora ${spec.name} ${spec.usage}`,
      '',
      ...(spec.positional ? [`  ${spec.positional.metavar}`.padEnd(width) + spec.positional.description, ''] : []),
      'flags:',
      ...lines,
      ...(spec.details ? ['', spec.details] : []),
    ].join('\n') + '\n'
  );
}

/** A positive integer flag, or a UserError naming it. */
export function positiveInt(command: string, name: string, v: number | undefined, allowZero = false): number {
  if (v === undefined || !Number.isInteger(v) || v < 0 || (v === 0 && !allowZero)) {
    throw new UserError(
      `sqlora ${command}: --${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`,
    );
  }
  return v;
}
