/**
 * A local HTTP server with the Hugging Face Hub endpoints @huggingface/hub calls to create a
 * repo and commit to it (read from the library's source, shaped like huggingface.co's answers):
 *
 *   GET  /api/models/{repo}/revision/{rev}          modelInfo (404 for a missing repo)
 *   POST /api/repos/create                          createRepo (an initial commit with .gitattributes)
 *   GET  /api/models/{repo}/tree/{rev}?recursive=   listFiles (git blob oid; lfs {oid: sha256, size})
 *   POST /api/models/{repo}/preupload/{branch}      which files go through LFS
 *   POST /{repo}.git/info/lfs/objects/batch         LFS batch: upload + verify actions, "basic" transfer
 *   PUT  /_lfs/{oid}                                the bytes (sha256 and size checked)
 *   PUT  /_lfs/{oid}/part/{n}, POST /_lfs/{oid}     multipart: objects over `multipartChunk` bytes
 *   POST /_lfs/{oid}/verify                         LFS verify
 *   POST /api/models/{repo}/commit/{branch}         the commit (NDJSON: header, file, lfsFile)
 *
 * Tokens are "write" or "read"; any other Bearer value gets 401, as the Hub answers invalid
 * credentials. Every request is logged (method, path, Authorization header).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubFile {
  data: Buffer;
  lfs: boolean;
}

export interface HubCommit {
  oid: string;
  title: string;
  parent: string | null;
  /** Paths the commit added or changed, in request order, and how (inline file or LFS pointer). */
  changes: Array<{ path: string; kind: 'file' | 'lfsFile' }>;
  files: Map<string, HubFile>;
}

export interface HubRepo {
  private: boolean;
  commits: HubCommit[];
}

export interface HubRequest {
  method: string;
  path: string;
  auth: string | undefined;
}

export const gitBlobOid = (data: Buffer): string =>
  createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
export const sha256Hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

const LFS_PATTERNS = [/\.safetensors$/, /\.gguf$/, /\.bin$/, /\.pt$/];
const GITATTRIBUTES = Buffer.from(
  '*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.gguf filter=lfs diff=lfs merge=lfs -text\n',
);

export class FakeHub {
  endpoint = '';
  readonly repos = new Map<string, HubRepo>();
  readonly tokens = new Map<string, 'write' | 'read'>();
  readonly requests: HubRequest[] = [];
  /** LFS objects stored by PUT, and those verified since. */
  readonly lfsObjects = new Map<string, Buffer>();
  readonly verified = new Set<string>();
  /** Objects larger than this go up in parts of this size (the Hub's multipart transfer); 0: never. */
  multipartChunk = 0;
  private readonly parts = new Map<string, Buffer>();
  private server: Server | undefined;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          this.handle(req, res, Buffer.concat(chunks));
        } catch (err) {
          json(res, 500, { error: String(err) });
        }
      });
    });
    await new Promise<void>((done) => this.server!.listen(0, '127.0.0.1', done));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  stop(): Promise<void> {
    return new Promise((done) => this.server?.close(() => done()) ?? done());
  }

  head(repo: string): HubCommit {
    const r = this.repos.get(repo);
    if (!r) throw new Error(`no repo ${repo}`);
    return r.commits[r.commits.length - 1];
  }

  /** Requests whose path matches, as "METHOD path". */
  calls(match: RegExp): string[] {
    return this.requests.filter((r) => match.test(r.path)).map((r) => `${r.method} ${r.path}`);
  }

  private role(req: IncomingMessage): 'write' | 'read' | 'anonymous' | 'invalid' {
    const auth = req.headers.authorization;
    // Storage URLs carry their own (non-Bearer) credentials.
    if (!auth?.startsWith('Bearer ')) return 'anonymous';
    return this.tokens.get(auth.slice('Bearer '.length)) ?? 'invalid';
  }

  private handle(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    const method = req.method ?? 'GET';
    this.requests.push({ method, path, auth: req.headers.authorization });
    const role = this.role(req);
    if (role === 'invalid') return json(res, 401, { error: 'Invalid credentials in Authorization header' });
    const canRead = (r: HubRepo): boolean => !r.private || role !== 'anonymous';
    const needWrite = (): boolean => {
      if (role === 'write') return true;
      json(res, role === 'anonymous' ? 401 : 403, {
        error: role === 'anonymous' ? 'Unauthorized' : 'You have read access but not the required permissions',
      });
      return false;
    };

    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/);
    if (m && method === 'GET') {
      const repo = this.repos.get(m[1]);
      if (!repo || !canRead(repo)) return json(res, 404, { error: 'Repository not found' });
      const commit = this.resolve(repo, m[2]);
      if (!commit) return json(res, 404, { error: 'Revision Not Found' });
      return json(res, 200, {
        _id: '6570',
        id: m[1],
        sha: commit.oid,
        private: repo.private,
        downloads: 0,
        likes: 0,
        lastModified: '2026-12-08T00:00:00.000Z',
      });
    }
    if (path === '/api/repos/create' && method === 'POST') {
      if (!needWrite()) return;
      const p = JSON.parse(body.toString()) as { name: string; organization: string; visibility?: string };
      const id = `${p.organization}/${p.name}`;
      if (this.repos.has(id)) return json(res, 409, { error: 'You already created this model repo' });
      const files = new Map([['.gitattributes', { data: GITATTRIBUTES, lfs: false }]]);
      this.repos.set(id, {
        private: p.visibility === 'private',
        commits: [{ oid: newOid(), title: 'initial commit', parent: null, changes: [], files }],
      });
      return json(res, 200, { url: `${this.endpoint}/${id}`, name: id, id: '6571' });
    }
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/);
    if (m && method === 'GET') {
      const repo = this.repos.get(m[1]);
      if (!repo || !canRead(repo)) return json(res, 404, { error: 'Repository not found' });
      const commit = this.resolve(repo, m[2]);
      if (!commit) return json(res, 404, { error: 'Revision Not Found' });
      return json(
        res,
        200,
        [...commit.files].map(([p, f]) => {
          const pointer = Buffer.from(
            `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256Hex(f.data)}\nsize ${f.data.length}\n`,
          );
          return {
            type: 'file',
            path: p,
            oid: gitBlobOid(f.lfs ? pointer : f.data),
            size: f.lfs ? pointer.length : f.data.length,
            ...(f.lfs ? { lfs: { oid: sha256Hex(f.data), size: f.data.length, pointerSize: pointer.length } } : {}),
          };
        }),
      );
    }
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/preupload\/([^/]+)$/);
    if (m && method === 'POST') {
      if (!this.repos.has(m[1])) return json(res, 404, { error: 'Repository not found' });
      if (!needWrite()) return;
      const p = JSON.parse(body.toString()) as { files: Array<{ path: string; size: number; sample: string }> };
      return json(res, 200, {
        files: p.files.map((f) => ({
          path: f.path,
          uploadMode:
            LFS_PATTERNS.some((re) => re.test(f.path)) || Buffer.from(f.sample, 'base64').includes(0)
              ? 'lfs'
              : 'regular',
        })),
      });
    }
    m = path.match(/^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/);
    if (m && method === 'POST') {
      if (!this.repos.has(m[1])) return json(res, 404, { error: 'Repository not found' });
      if (!needWrite()) return;
      const p = JSON.parse(body.toString()) as {
        operation: string;
        transfers: string[];
        objects: Array<{ oid: string; size: number }>;
      };
      if (p.operation !== 'upload' || !p.transfers.includes('basic')) return json(res, 422, { error: 'bad batch' });
      return json(res, 200, {
        transfer: 'basic',
        objects: p.objects.map((o) =>
          this.lfsObjects.has(o.oid)
            ? { oid: o.oid, size: o.size }
            : {
                oid: o.oid,
                size: o.size,
                authenticated: true,
                actions: {
                  upload: this.uploadAction(o.oid, o.size),
                  verify: {
                    href: `${this.endpoint}/_lfs/${o.oid}/verify`,
                    header: { Authorization: 'Basic dmVyaWZ5' },
                  },
                },
              },
        ),
      });
    }
    m = path.match(/^\/_lfs\/([0-9a-f]{64})$/);
    if (m && method === 'PUT') {
      if (sha256Hex(body) !== m[1] || Number(req.headers['content-length']) !== body.length)
        return json(res, 400, { error: 'content does not match its oid' });
      this.lfsObjects.set(m[1], body);
      return void res.writeHead(200).end();
    }
    m = path.match(/^\/_lfs\/([0-9a-f]{64})\/part\/(\d+)$/);
    if (m && method === 'PUT') {
      this.parts.set(`${m[1]}/${m[2]}`, body);
      return void res.writeHead(200, { ETag: `"etag-${m[2]}"` }).end();
    }
    m = path.match(/^\/_lfs\/([0-9a-f]{64})$/);
    if (m && method === 'POST') {
      const p = JSON.parse(body.toString()) as { oid: string; parts: Array<{ partNumber: number; etag: string }> };
      const data = Buffer.concat(
        p.parts.map((part) => {
          if (part.etag !== `"etag-${part.partNumber}"`) throw new Error(`bad etag ${part.etag}`);
          return this.parts.get(`${m![1]}/${part.partNumber}`) ?? Buffer.alloc(0);
        }),
      );
      if (p.oid !== m[1] || sha256Hex(data) !== m[1]) return json(res, 400, { error: 'parts do not make the object' });
      this.lfsObjects.set(m[1], data);
      return json(res, 200, {});
    }
    m = path.match(/^\/_lfs\/([0-9a-f]{64})\/verify$/);
    if (m && method === 'POST') {
      const p = JSON.parse(body.toString()) as { oid: string; size: number };
      const stored = this.lfsObjects.get(m[1]);
      if (req.headers.authorization !== 'Basic dmVyaWZ5' || p.oid !== m[1] || stored?.length !== p.size)
        return json(res, 422, { message: 'object not stored' });
      this.verified.add(m[1]);
      return json(res, 200, {});
    }
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/commit\/([^/]+)$/);
    if (m && method === 'POST') {
      const repo = this.repos.get(m[1]);
      if (!repo) return json(res, 404, { error: 'Repository not found' });
      if (!needWrite()) return;
      const lines = body
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { key: string; value: Record<string, string | number> });
      const header = lines[0];
      if (header?.key !== 'header') return json(res, 400, { error: 'no header' });
      const parent = repo.commits[repo.commits.length - 1];
      if (header.value.parentCommit !== undefined && header.value.parentCommit !== parent.oid)
        return json(res, 412, { error: 'A commit has happened since. Please refresh and try again.' });
      const files = new Map(parent.files);
      const changes: HubCommit['changes'] = [];
      for (const { key, value } of lines.slice(1)) {
        const p = String(value.path);
        if (key === 'file') {
          files.set(p, { data: Buffer.from(String(value.content), 'base64'), lfs: false });
        } else if (key === 'lfsFile') {
          const data = this.lfsObjects.get(String(value.oid));
          if (!data || !this.verified.has(String(value.oid)) || data.length !== value.size)
            return json(res, 422, { error: `LFS object of ${p} was not uploaded and verified` });
          files.set(p, { data, lfs: true });
        } else {
          return json(res, 400, { error: `unexpected operation ${key}` });
        }
        changes.push({ path: p, kind: key as 'file' | 'lfsFile' });
      }
      const oid = newOid();
      repo.commits.push({ oid, title: String(header.value.summary), parent: parent.oid, changes, files });
      return json(res, 200, { commitOid: oid, commitUrl: `${this.endpoint}/${m[1]}/commit/${oid}`, hookOutput: '' });
    }
    json(res, 404, { error: `not found: ${method} ${path}` });
  }

  private uploadAction(oid: string, size: number): { href: string; header?: Record<string, string> } {
    const href = `${this.endpoint}/_lfs/${oid}`;
    if (this.multipartChunk === 0 || size <= this.multipartChunk) return { href };
    const header: Record<string, string> = { chunk_size: String(this.multipartChunk) };
    for (let n = 1; (n - 1) * this.multipartChunk < size; n++) header[String(n).padStart(5, '0')] = `${href}/part/${n}`;
    return { href, header };
  }

  private resolve(repo: HubRepo, rev: string): HubCommit | undefined {
    if (rev === 'main' || rev === 'HEAD') return repo.commits[repo.commits.length - 1];
    return repo.commits.find((c) => c.oid === rev);
  }
}

function newOid(): string {
  return randomBytes(20).toString('hex');
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
}
