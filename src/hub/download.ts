/**
 * Resolves a model argument to a local checkpoint directory: a directory is used as is; a Hub
 * repo id (`owner/name`, optionally `@revision`) is downloaded into the standard Hugging Face
 * cache (see cache.ts) and its snapshot directory returned.
 *
 * The revision and file list come from the Hub API through @huggingface/hub (modelInfo,
 * listFiles); file contents are fetched here so that an interrupted download resumes with a
 * Range request from its `.incomplete` blob and shows byte progress. Only the files a
 * checkpoint needs are fetched (config, tokenizer, chat template, safetensors weights).
 *
 * Environment, as huggingface_hub reads it: HF_TOKEN (sent as a Bearer token, never printed),
 * HF_ENDPOINT, HF_HUB_OFFLINE=1 (cache only), HF_HOME / HF_HUB_CACHE (cache location).
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { UserError, describeError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { findHubToken } from './token.js';
import { COMMIT_HASH, cachedCommit, hubCacheDir, linkSnapshotFile, repoCacheDir, writeRef } from './cache.js';

export interface ResolveModelOptions {
  /** Overrides an `@revision` in the id; default "main". */
  revision?: string;
  cacheDir?: string;
  endpoint?: string;
  token?: string;
  offline?: boolean;
  /** No progress bar or warnings. */
  quiet?: boolean;
  /** Where progress and warnings go (stderr by default). */
  stream?: NodeJS.WriteStream;
  /** Environment to read HF_* variables from (process.env by default). */
  env?: NodeJS.ProcessEnv;
  /** Skip the weights (safetensors and their index): enough for tokenizer and chat template. */
  skipWeights?: boolean;
}

export interface ResolvedModel {
  /** The checkpoint directory (the argument itself, or a cache snapshot). */
  dir: string;
  repoId?: string;
  commit?: string;
  /** Bytes fetched by this call (0 when everything was cached). */
  downloadedBytes: number;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Files a checkpoint needs; weights only as safetensors. */
export function isCheckpointFile(path: string): boolean {
  if (path.includes('/')) return false;
  return (
    /^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|added_tokens|vocab|preprocessor_config)\.json$/.test(
      path,
    ) ||
    path === 'merges.txt' ||
    path === 'chat_template.jinja' ||
    path === 'chat_template.json' ||
    path.endsWith('.safetensors') ||
    path === 'model.safetensors.index.json'
  );
}

export function parseRepoRef(ref: string): { repoId: string; revision?: string } | undefined {
  const at = ref.indexOf('@');
  const repoId = at < 0 ? ref : ref.slice(0, at);
  const revision = at < 0 ? undefined : ref.slice(at + 1);
  if (!REPO_ID.test(repoId) || revision === '') return undefined;
  return { repoId, revision };
}

export async function resolveModel(idOrDir: string, opts: ResolveModelOptions = {}): Promise<ResolvedModel> {
  if (existsSync(idOrDir) && statSync(idOrDir).isDirectory()) return { dir: idOrDir, downloadedBytes: 0 };
  const ref = parseRepoRef(idOrDir);
  if (!ref)
    throw new UserError(
      `model not found: ${idOrDir} is neither a directory nor a Hub repo id like Qwen/Qwen1.5-1.8B-Chat`,
    );
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? ref.revision ?? 'main';
  const cacheDir = opts.cacheDir ?? hubCacheDir(env);
  const repoDir = repoCacheDir(cacheDir, ref.repoId);
  const endpoint = opts.endpoint?.replace(/\/+$/, '') ?? hubEndpoint(env);
  const offline = opts.offline ?? isTrue(env.HF_HUB_OFFLINE);
  const warn = (msg: string): void => {
    if (!opts.quiet) (opts.stream ?? process.stderr).write(`warning: ${msg}\n`);
  };

  const fromCache = (): ResolvedModel | undefined => {
    const commit = cachedCommit(repoDir, revision);
    const dir = commit && join(repoDir, 'snapshots', commit);
    return dir && existsSync(join(dir, 'config.json'))
      ? { dir, repoId: ref.repoId, commit, downloadedBytes: 0 }
      : undefined;
  };
  const what = `${ref.repoId}@${revision}`;
  if (offline) {
    const cached = fromCache();
    if (cached) return cached;
    throw new UserError(
      `${what} is not in the Hugging Face cache ${cacheDir} and HF_HUB_OFFLINE is set: download it once online, or pass a local directory`,
    );
  }

  const token = findHubToken(opts.token, env)?.value;
  // The token is added here rather than passed to the library, so it reaches only our endpoint
  // and never appears in an argument list or a message.
  const authFetch: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  const hub = { hubUrl: endpoint, fetch: authFetch };

  let commit: string;
  let files: Array<{ path: string; size: number; etag: string }>;
  try {
    const info = await modelInfo({ name: ref.repoId, revision, additionalFields: ['sha'], ...hub });
    if (typeof info.sha !== 'string' || !COMMIT_HASH.test(info.sha))
      throw new UserError(`${endpoint} returned no commit for ${what}`);
    commit = info.sha;
    files = [];
    for await (const entry of listFiles({
      repo: { type: 'model', name: ref.repoId },
      revision: commit,
      recursive: true,
      ...hub,
    })) {
      if (entry.type !== 'file' || !isCheckpointFile(entry.path)) continue;
      if (opts.skipWeights && (entry.path.endsWith('.safetensors') || entry.path.endsWith('.index.json'))) continue;
      const etag = entry.lfs?.oid ?? entry.oid;
      if (!etag) throw new UserError(`${endpoint} listed ${entry.path} of ${what} without an id`);
      files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size, etag });
    }
  } catch (err) {
    if (isNetworkError(err)) {
      const cached = fromCache();
      if (cached) {
        warn(`cannot reach ${endpoint} (${networkCause(err)}); using the cached snapshot ${cached.commit} of ${what}`);
        return cached;
      }
      throw new UserError(
        `cannot reach ${endpoint} to download ${what} (${networkCause(err)}): check the network, or set HF_ENDPOINT to a mirror`,
      );
    }
    throw hubError(err, what, endpoint, Boolean(token));
  }
  if (!opts.skipWeights && !files.some((f) => f.path.endsWith('.safetensors'))) {
    throw new UserError(`${what} has no safetensors weights (only safetensors checkpoints are supported)`);
  }

  const snapshot = join(repoDir, 'snapshots', commit);
  const todo = files.filter((f) => !existsSync(join(snapshot, f.path)));
  const blobOf = (f: { etag: string }): string => join(repoDir, 'blobs', f.etag);
  const have = (f: { etag: string }): number => sizeOf(blobOf(f)) ?? sizeOf(blobOf(f) + '.incomplete') ?? 0;
  const totalMb = Math.ceil(todo.reduce((s, f) => s + f.size, 0) / 1e6);
  const startMb = Math.floor(todo.reduce((s, f) => s + Math.min(have(f), f.size), 0) / 1e6);
  const progress = todo.length
    ? new Progress(
        { label: `download ${ref.repoId}`, total: totalMb, unit: 'MB', quiet: opts.quiet, stream: opts.stream },
        startMb,
      )
    : undefined;
  let downloaded = 0;
  let shownMb = startMb;
  const onBytes = (n: number): void => {
    downloaded += n;
    const mb = Math.floor((startMb * 1e6 + downloaded) / 1e6);
    if (mb > shownMb) progress?.tick(mb - shownMb);
    shownMb = Math.max(mb, shownMb);
  };
  for (const f of todo) {
    const blob = blobOf(f);
    if (sizeOf(blob) !== f.size) {
      const url = `${endpoint}/${ref.repoId}/resolve/${commit}/${f.path.split('/').map(encodeURIComponent).join('/')}`;
      await downloadBlob(url, blob, f.size, authFetch, onBytes, `${f.path} of ${what}`);
    }
    linkSnapshotFile(blob, join(snapshot, f.path));
  }
  progress?.finish();
  writeRef(repoDir, revision, commit);
  return { dir: snapshot, repoId: ref.repoId, commit, downloadedBytes: downloaded };
}

/** Fetches url into `blob`, continuing a partial `blob.incomplete` with a Range request. */
async function downloadBlob(
  url: string,
  blob: string,
  size: number,
  doFetch: typeof fetch,
  onBytes: (n: number) => void,
  what: string,
): Promise<void> {
  const partial = blob + '.incomplete';
  mkdirSync(dirname(blob), { recursive: true });
  let have = sizeOf(partial) ?? 0;
  if (have > size) {
    rmSync(partial);
    have = 0;
  }
  if (have < size || size === 0) {
    let res: Response;
    try {
      res = await doFetch(url, { headers: have > 0 ? { Range: `bytes=${have}-` } : {} });
    } catch (err) {
      throw new UserError(`cannot download ${what} (${networkCause(err)}): check the network and run again to resume`);
    }
    if (res.status === 200)
      have = 0; // the server ignored the range: start over
    else if (res.status !== 206 || !res.body) {
      throw new UserError(
        `cannot download ${what}: ${url.replace(/\/resolve\/.*/, '/resolve/...')} answered HTTP ${res.status}`,
      );
    }
    const fd = openSync(partial, have > 0 ? 'a' : 'w');
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        writeSync(fd, chunk);
        have += chunk.length;
        onBytes(chunk.length);
      }
    } catch (err) {
      throw new UserError(
        `download of ${what} was interrupted after ${have} of ${size} bytes (${networkCause(err)}): run again to resume`,
      );
    } finally {
      closeSync(fd);
    }
  }
  if (have !== size) {
    rmSync(partial, { force: true });
    throw new UserError(`download of ${what} ended with ${have} bytes, expected ${size}: run again to retry`);
  }
  renameSync(partial, blob);
}

function sizeOf(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

/** The Hub endpoint: HF_ENDPOINT (a mirror) or huggingface.co, without a trailing slash. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
}

/** fetch() rejects with a TypeError whose cause holds the socket error. */
function isNetworkError(err: unknown): boolean {
  return err instanceof TypeError && (err.message === 'fetch failed' || err.cause instanceof Error);
}

function networkCause(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) {
    const code = (cause as { code?: string }).code;
    return code ? `${code}` : cause.message;
  }
  return describeError(err);
}

function hubError(err: unknown, what: string, endpoint: string, withToken: boolean): Error {
  if (err instanceof UserError || !(err instanceof HubApiError))
    return err instanceof Error ? err : new Error(String(err));
  const tokenHint = withToken
    ? 'the token in HF_TOKEN was refused or has no access to it'
    : 'for a private or gated model, set HF_TOKEN to a token with read access';
  const revision = /revision/i.test(err.message);
  switch (err.statusCode) {
    case 401:
      return new UserError(
        `cannot access ${what} on ${endpoint} (HTTP 401): it does not exist or is private; ${tokenHint}`,
      );
    case 403:
      return new UserError(
        `access to ${what} is restricted (HTTP 403): accept its conditions at ${endpoint}/${what.split('@')[0]} with the account of HF_TOKEN`,
      );
    case 404:
      return new UserError(
        revision
          ? `revision not found: ${what} on ${endpoint} (check the branch, tag or commit after @)`
          : `model not found: ${what} on ${endpoint} (check the repo id; ${tokenHint})`,
      );
    default:
      return new UserError(`the Hub at ${endpoint} answered HTTP ${err.statusCode} for ${what}: try again later`);
  }
}
