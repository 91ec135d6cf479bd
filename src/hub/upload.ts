/**
 * Uploads a folder's files to a Hugging Face model repo in one commit, through @huggingface/hub:
 * the repo is created when missing; files the Hub stores with LFS (weights, GGUF) go through
 * the LFS batch API (preupload decides which); and only files whose content differs from the
 * remote's are sent: a file is unchanged when the remote lists the same size and the same id
 * (the LFS sha256 for LFS files, the git blob sha1 for the others). Nothing changed, no commit.
 *
 * The library's basic LFS transfer PUTs the bytes but does not call the verify action the LFS
 * batch answer carries; the fetch wrapper below calls it after each successful upload, as
 * git-lfs and huggingface_hub do. It also sends the PUTs itself (streamingPut.ts: with
 * backpressure, counting bytes for the progress bar). Xet storage is not used: the LFS
 * protocol is what every Hub endpoint (and mirror) serves.
 */
import { createHash } from 'node:crypto';
import { createReadStream, openAsBlob, statSync } from 'node:fs';
import { commitIter, createRepo, HubApiError, listFiles, modelInfo, type CommitOperation } from '@huggingface/hub';
import { UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { streamingPut } from './streamingPut.js';
import { redactToken, type HubToken } from './token.js';

export interface UploadFile {
  /** Path in the repo, with forward slashes. */
  path: string;
  /** The local file. */
  file: string;
}

export interface UploadOptions {
  /** `owner/name`. */
  repo: string;
  token: HubToken;
  /** The Hub's base URL (HF_ENDPOINT), no trailing slash. */
  endpoint: string;
  /** Visibility of a repo created here; an existing repo keeps its own. */
  private?: boolean;
  commitTitle: string;
  commitDescription?: string;
  quiet?: boolean;
  /** Where progress goes (stderr by default). */
  stream?: NodeJS.WriteStream;
}

export interface UploadResult {
  repoUrl: string;
  created: boolean;
  /** The new commit, or null when every file was already there. */
  commit: { oid: string; url: string } | null;
  uploaded: string[];
  unchanged: string[];
}

export const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

export function checkRepoId(repo: string): void {
  if (!REPO_ID.test(repo) || repo.includes('..') || /\.git$/.test(repo))
    throw new UserError(
      `--repo ${JSON.stringify(repo)} is not a Hub repo id: expected OWNER/NAME (letters, digits, - _ .), e.g. alice/qwen1.5-1.8b-text-to-sql`,
    );
}

interface RemoteEntry {
  size: number;
  oid: string;
  lfs: boolean;
}

export async function uploadToHub(files: readonly UploadFile[], opts: UploadOptions): Promise<UploadResult> {
  checkRepoId(opts.repo);
  const { token, endpoint } = opts;
  if (!token.value.startsWith('hf_'))
    throw new UserError(`the token from ${token.source} does not start with "hf_": it is not a Hugging Face token`);
  const repoUrl = `${endpoint}/${opts.repo}`;
  const counter = new ByteCounter();
  const hub = { hubUrl: endpoint, accessToken: token.value, fetch: lfsFetch(counter) };
  const fail = (err: unknown, doing: string): Error => hubError(err, doing, opts);

  let created = false;
  let parentCommit: string | undefined;
  const remote = new Map<string, RemoteEntry>();
  try {
    const info = await modelInfo({ name: opts.repo, revision: 'main', additionalFields: ['sha'], ...hub });
    parentCommit = typeof info.sha === 'string' ? info.sha : undefined;
  } catch (err) {
    if (!(err instanceof HubApiError && err.statusCode === 404)) throw fail(err, `reading ${opts.repo}`);
  }
  if (parentCommit === undefined) {
    try {
      await createRepo({ repo: { type: 'model', name: opts.repo }, private: opts.private ?? false, ...hub });
      created = true;
    } catch (err) {
      throw fail(err, `creating ${opts.repo}`);
    }
  } else {
    try {
      for await (const e of listFiles({
        repo: { type: 'model', name: opts.repo },
        revision: parentCommit,
        recursive: true,
        ...hub,
      })) {
        if (e.type !== 'file') continue;
        remote.set(e.path, { size: e.lfs?.size ?? e.size, oid: e.lfs?.oid ?? e.oid ?? '', lfs: e.lfs !== undefined });
      }
    } catch (err) {
      throw fail(err, `listing the files of ${opts.repo}`);
    }
  }

  const changed: UploadFile[] = [];
  const unchanged: string[] = [];
  for (const f of files) {
    const r = remote.get(f.path);
    const same = r !== undefined && r.size === statSync(f.file).size && (await fileOid(f.file, r.lfs)) === r.oid;
    if (same) unchanged.push(f.path);
    else changed.push(f);
  }
  if (changed.length === 0) return { repoUrl, created, commit: null, uploaded: [], unchanged };

  const totalBytes = changed.reduce((s, f) => s + statSync(f.file).size, 0);
  const unit = totalBytes >= 10e6 ? { name: 'MB', bytes: 1e6 } : { name: 'kB', bytes: 1e3 };
  const totalUnits = Math.ceil(totalBytes / unit.bytes);
  const progress = new Progress({
    label: `upload ${opts.repo}`,
    total: totalUnits,
    unit: unit.name,
    quiet: opts.quiet,
    stream: opts.stream,
  });
  let shown = 0;
  const show = (bytes: number): void => {
    const units = bytes >= totalBytes ? totalUnits : Math.floor(bytes / unit.bytes);
    if (units > shown) progress.tick(units - shown);
    shown = Math.max(shown, units);
  };
  counter.onBytes = () => show(counter.bytes);

  const operations: CommitOperation[] = [];
  for (const f of changed)
    operations.push({ operation: 'addOrUpdate', path: f.path, content: await openAsBlob(f.file) });
  let output;
  try {
    const it = commitIter({
      repo: { type: 'model', name: opts.repo },
      operations,
      title: opts.commitTitle,
      description: opts.commitDescription,
      parentCommit,
      useXet: false,
      ...hub,
    });
    for (let step = await it.next(); ; step = await it.next()) {
      if (step.done) {
        output = step.value;
        break;
      }
      const ev = step.value;
      if (ev.event === 'phase') progress.set({ phase: ev.phase });
      else if (ev.state === 'error') throw new UserError(`the Hub did not accept ${ev.path}`);
    }
    // Regular files travel inside the commit request: they count once it is answered.
    show(totalBytes);
  } catch (err) {
    throw fail(err, `uploading to ${opts.repo}`);
  } finally {
    progress.finish();
  }
  if (!output?.commit?.oid)
    throw new UserError(`the Hub at ${endpoint} answered the commit to ${opts.repo} without a commit id`);
  return {
    repoUrl,
    created,
    commit: { oid: output.commit.oid, url: output.commit.url ?? `${repoUrl}/commit/${output.commit.oid}` },
    uploaded: changed.map((f) => f.path),
    unchanged,
  };
}

/** The id the Hub lists for a file: its sha256 when stored with LFS, else its git blob sha1. */
export async function fileOid(path: string, lfs: boolean): Promise<string> {
  const hash = createHash(lfs ? 'sha256' : 'sha1');
  if (!lfs) hash.update(`blob ${statSync(path).size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

class ByteCounter {
  bytes = 0;
  onBytes: () => void = () => {};
  add(n: number): void {
    this.bytes += n;
    this.onBytes();
  }
}

type LfsAction = { href: string; header?: Record<string, string> };

/**
 * fetch for the library: LFS PUTs stream from the file with backpressure and count their bytes,
 * and the LFS verify action follows each successful upload (see the file comment).
 */
function lfsFetch(counter: ByteCounter): typeof fetch {
  const verifyByHref = new Map<string, { action: LfsAction; oid: string; size: number }>();
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const res =
      init?.method === 'PUT' && init.body instanceof Blob
        ? await streamingPut(url, init.body, new Headers(init.headers), (n) => counter.add(n), init.signal)
        : await fetch(input, init);
    if (res.ok && init?.method === 'POST' && url.endsWith('/info/lfs/objects/batch')) {
      const body = (await res.clone().json()) as {
        objects?: Array<{ oid: string; size: number; actions?: { upload?: LfsAction; verify?: LfsAction } }>;
      };
      for (const o of body.objects ?? []) {
        if (o.actions?.upload && o.actions.verify)
          verifyByHref.set(o.actions.upload.href, { action: o.actions.verify, oid: o.oid, size: o.size });
      }
    }
    // A basic upload PUTs to the upload href; a multipart one POSTs its completion there.
    const verify = res.ok && (init?.method === 'PUT' || init?.method === 'POST') ? verifyByHref.get(url) : undefined;
    if (verify) {
      const v = await fetch(verify.action.href, {
        method: 'POST',
        headers: {
          ...verify.action.header,
          Accept: 'application/vnd.git-lfs+json',
          'Content-Type': 'application/vnd.git-lfs+json',
        },
        body: JSON.stringify({ oid: verify.oid, size: verify.size }),
      });
      if (!v.ok) return v; // the library turns a failed answer into its error
    }
    return res;
  };
}

function hubError(err: unknown, doing: string, opts: UploadOptions): Error {
  const { token, endpoint, repo } = opts;
  if (err instanceof UserError) return new UserError(redactToken(err.message, token), err.exitCode);
  if (err instanceof TypeError && (err.message === 'fetch failed' || err.cause instanceof Error)) {
    const cause = err.cause as { code?: string; message?: string } | undefined;
    return new UserError(
      `cannot reach ${endpoint} while ${doing} (${cause?.code ?? cause?.message ?? err.message}): check the network, or HF_ENDPOINT`,
    );
  }
  if (!(err instanceof HubApiError)) return err instanceof Error ? err : new Error(String(err));
  const said = redactToken(err.message.replace(/\. URL: .*$/s, ''), token);
  switch (err.statusCode) {
    case 401:
      return new UserError(
        `the Hub at ${endpoint} refused the token from ${token.source} (HTTP 401 while ${doing}): it is invalid or expired; create a write token at https://huggingface.co/settings/tokens`,
      );
    case 403:
      return new UserError(
        `the token from ${token.source} may not write to ${repo} (HTTP 403 while ${doing}): use a token with write access to the ${repo.split('/')[0]} namespace`,
      );
    case 409:
      return new UserError(
        `${repo} already exists but the token from ${token.source} cannot read it (HTTP 409 while ${doing}): use a token of its owner, or another --repo`,
      );
    case 412:
      return new UserError(`${repo} changed while uploading (HTTP 412): run the command again`);
    default:
      return new UserError(`the Hub at ${endpoint} answered HTTP ${err.statusCode} while ${doing}: ${said}`);
  }
}
