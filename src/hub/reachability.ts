/**
 * Whether the Hugging Face Hub (or the mirror in HF_ENDPOINT) answers: one HEAD request with a
 * short timeout. Any HTTP answer counts as reachable (a mirror's root may well be a 404); a
 * refused connection, an unknown host or the timeout do not.
 */
import { describeError } from '../util/errors.js';

export type Reachability = { ok: true; status: number; ms: number } | { ok: false; error: string };

export async function hubReachable(endpoint: string, timeoutMs = 3000): Promise<Reachability> {
  const start = performance.now();
  try {
    const res = await fetch(endpoint, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    return { ok: true, status: res.status, ms: Math.round(performance.now() - start) };
  } catch (err) {
    const e = err as Error & { cause?: unknown };
    if (e.name === 'TimeoutError') return { ok: false, error: `no answer within ${timeoutMs} ms` };
    const cause = e.cause as { code?: string; message?: string } | undefined;
    return { ok: false, error: cause?.code ?? cause?.message ?? describeError(err) };
  }
}
