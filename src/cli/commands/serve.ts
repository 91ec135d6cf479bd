import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { ChatTemplate } from '../../data/chatTemplate.js';
import { DEFAULT_LIMITS } from '../../serve/database.js';
import { createServeEngine, DEFAULT_SERVE_LIMITS, type ServeLimits } from '../../serve/engine.js';
import {
  checkHost,
  checkOrigin,
  checkPort,
  closeDatabases,
  isLoopback,
  openDatabases,
  parseDatabaseFlags,
  probePort,
} from '../../serve/launch.js';
import { createServeServer } from '../../serve/server.js';
import { adapterPrompting } from '../../serve/sqlPrompting.js';
import { DEFAULT_PROMPT_SETTINGS, readPromptSettings } from '../../data/promptSettings.js';
import { UserError } from '../../util/errors.js';
import { positiveInt, type CommandSpec, type ParsedArgs } from '../args.js';
import { decodeBatchSize, loadModel } from '../../api/load.js';
import { deviceFlag, quantizeFlag } from './engine.js';

export const command: CommandSpec = {
  name: 'serve',
  summary: 'OpenAI-compatible API, /v1/sql on your databases and a web page, with continuous batching',
  usage: '--adapter DIR [--model BASE] --db NAME=FILE|URL ... [--host 127.0.0.1] [--port 8000] [--api-key KEY]',
  flags: [
    {
      name: 'model',
      type: 'string',
      metavar: 'DIR|ID',
      description: "model folder or Hugging Face repo id (default: the adapter's base model)",
    },
    { name: 'adapter', type: 'string', metavar: 'DIR', description: 'PEFT LoRA adapter folder (sqlora train output)' },
    {
      name: 'db',
      type: 'string',
      metavar: 'NAME=FILE|URL',
      repeatable: true,
      description:
        "a database /v1/sql may query: a SQLite file or postgres:// URL under NAME (without NAME=: the file's base name or the URL's database; repeat for more); no other is reachable",
    },
    {
      name: 'name',
      type: 'string',
      metavar: 'NAME',
      description:
        "the model's name in /v1/models and answers (default: the adapter folder's name (its run folder's for RUN/adapter), else the model's)",
    },
    { name: 'host', type: 'string', default: '127.0.0.1', description: 'address to bind (loopback unless you say)' },
    { name: 'port', type: 'number', default: 8000, description: 'port to bind (0 = any free port)' },
    {
      name: 'api-key',
      type: 'string',
      metavar: 'KEY',
      description: 'require Authorization: Bearer KEY on /v1 routes (default: $SQLORA_API_KEY; none = open)',
    },
    {
      name: 'cors',
      type: 'string',
      metavar: 'ORIGIN',
      description: 'let web pages of this origin call the API (default: no CORS headers)',
    },
    {
      name: 'max-batch',
      type: 'number',
      default: 0,
      description: 'sequences decoded together (0 = 64 on a GPU, 8 on the CPU)',
    },
    {
      name: 'context',
      type: 'number',
      default: 0,
      description: "prompt + answer tokens of one request at most (0 = the model's limit, at most 2048)",
    },
    {
      name: 'max-queue',
      type: 'number',
      default: 256,
      description: 'requests waiting for a batch slot at most (more get 503)',
    },
    {
      name: 'max-tokens',
      type: 'number',
      default: DEFAULT_SERVE_LIMITS.maxTokens,
      description: 'largest max_tokens a request may ask',
    },
    {
      name: 'max-body-bytes',
      type: 'number',
      default: DEFAULT_SERVE_LIMITS.maxBodyBytes,
      description: 'largest request body (413 beyond)',
    },
    {
      name: 'query-timeout',
      type: 'number',
      default: DEFAULT_LIMITS.timeoutMs / 1000,
      description: 'seconds one /v1/sql query may run',
    },
    {
      name: 'query-workers',
      type: 'number',
      default: 2,
      description: 'queries each database runs at once (SQLite: worker processes; PostgreSQL: connections)',
    },
    {
      name: 'max-rows',
      type: 'number',
      default: DEFAULT_LIMITS.maxRows,
      description: 'rows one /v1/sql answer holds at most',
    },
    {
      name: 'shutdown-timeout',
      type: 'number',
      default: DEFAULT_SERVE_LIMITS.shutdownMs / 1000,
      description: 'seconds SIGTERM waits for running requests before cancelling them',
    },
    // As eval: the NF4 base a QLoRA adapter was trained on.
    quantizeFlag('nf4'),
    deviceFlag(),
  ],
  details: [
    'Routes: GET / (web page), GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions',
    '(stream: true for server-sent events), GET /v1/databases, POST /v1/sql {"db": NAME, "question": TEXT}.',
    'Example:',
    '  sqlora serve --adapter runs/train/adapter --db shop=shop.sqlite --db crm=postgres://me@localhost/crm',
  ].join('\n'),
  run: runServe,
};

/**
 * A folder's last name (a served name must not reveal the server's paths); a Hub id as it is. An
 * adapter folder named "adapter" (train's RUN/adapter) goes by its run folder, as export names its files.
 */
export function servedName(adapter: string | undefined, source: string): string {
  const folder = (p: string): string => basename(resolve(p));
  if (adapter !== undefined) return folder(adapter) === 'adapter' ? folder(resolve(adapter, '..')) : folder(adapter);
  return existsSync(source) ? folder(source) : source;
}

async function runServe(args: ParsedArgs): Promise<void> {
  const host = args.string('host')!;
  const port = args.number('port')!;
  checkHost(host);
  checkPort(port);
  const cors = args.string('cors');
  if (cors !== undefined) checkOrigin(cors);
  const apiKey = args.string('api-key') ?? process.env.SQLORA_API_KEY;
  if (apiKey !== undefined && apiKey.length < 8) throw new UserError('--api-key must be at least 8 characters');
  const int = (name: string, zero = false): number => positiveInt('serve', name, args.number(name), zero);
  const seconds = (name: string): number => {
    const v = args.number(name)!;
    if (!(v > 0)) throw new UserError(`sqlora serve: --${name} must be a positive number of seconds, got ${v}`);
    return v * 1000;
  };
  const limits: ServeLimits = {
    ...DEFAULT_SERVE_LIMITS,
    maxTokens: int('max-tokens'),
    defaultMaxTokens: Math.min(DEFAULT_SERVE_LIMITS.defaultMaxTokens, int('max-tokens')),
    maxBodyBytes: int('max-body-bytes'),
    shutdownMs: seconds('shutdown-timeout'),
    query: { ...DEFAULT_LIMITS, timeoutMs: seconds('query-timeout'), maxRows: int('max-rows') },
  };
  const requestedBatch = int('max-batch', true);
  const requestedContext = int('context', true);
  const maxQueue = int('max-queue', true);
  const flags = parseDatabaseFlags(args.strings('db'));
  await probePort(host, port);
  const databases = await openDatabases(flags, int('query-workers'));
  try {
    const loaded = await loadModel({
      model: args.string('model'),
      adapter: args.string('adapter'),
      device: args.string('device')!,
      quantize: args.string('quantize')!,
    });
    // The prompt /v1/sql builds: the adapter's recorded settings (a warning and the defaults when it has none).
    const adapterDir = args.string('adapter');
    const recorded = adapterDir !== undefined ? readPromptSettings(adapterDir) : null;
    if (recorded?.warning) process.stderr.write(`warning: ${recorded.warning}\n`);
    const template = ChatTemplate.fromModelDir(loaded.dir);
    const contextTokens = requestedContext || Math.min(loaded.model.config.maxPositionEmbeddings, 2048);
    const engine = createServeEngine({
      modelId: args.string('name') ?? servedName(args.string('adapter'), loaded.source),
      model: loaded.model,
      tokenizer: loaded.tokenizer,
      template,
      stopIds: loaded.stopIds,
      padId: loaded.padId,
      sql: adapterPrompting(recorded?.settings ?? DEFAULT_PROMPT_SETTINGS, template, loaded.tokenizer),
      maxBatch: decodeBatchSize(requestedBatch, loaded),
      contextTokens,
      maxQueue,
    });
    const server = createServeServer({ engine, databases, limits, apiKey, cors });
    const { url } = await server.listen(port, host);
    const names = [...databases.keys()];
    process.stderr.write(
      `serving ${engine.modelId} on ${url} (batch ${decodeBatchSize(requestedBatch, loaded)}, context ${contextTokens}; databases: ${names.length ? names.join(', ') : 'none'})\n`,
    );
    if (!isLoopback(host) && !apiKey)
      process.stderr.write(`warning: ${host} is reachable from other machines and no --api-key is set\n`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string): void => {
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        process.stderr.write(`${signal}: finishing running requests, then stopping\n`);
        server.shutdown().then(resolve, resolve);
      };
      const onTerm = (): void => stop('SIGTERM');
      const onInt = (): void => stop('SIGINT');
      process.on('SIGTERM', onTerm);
      process.on('SIGINT', onInt);
    });
    engine.scheduler.free();
    process.stderr.write('stopped\n');
  } finally {
    await closeDatabases(databases);
  }
}
