/** Progress rates come from measured time: a bar made when the work starts, ticked after it. */
import type { WriteStream } from 'node:tty';
import { describe, expect, it } from 'vitest';
import { Progress } from '../../src/util/progress.js';

function sink(): { stream: WriteStream; text: () => string } {
  let text = '';
  const stream = { isTTY: false, write: (s: string) => ((text += s), true) } as unknown as WriteStream;
  return { stream, text: () => text };
}

describe('Progress', () => {
  it('the rate of the first item is one over the time it took', async () => {
    const out = sink();
    const p = new Progress({ label: 'train', total: 10, unit: 'step', stream: out.stream });
    await new Promise((r) => setTimeout(r, 250));
    p.tick(1);
    p.finish();
    const rate = Number(/1\/10 ([\d.]+) step\/s/.exec(out.text())![1]);
    expect(rate).toBeGreaterThan(2);
    expect(rate).toBeLessThanOrEqual(4);
  });

  it('a log (not a terminal) gets one line at the end of a short job, not one per item', () => {
    const out = sink();
    const p = new Progress({ label: 'eval loss', total: 3, unit: 'ex', stream: out.stream });
    p.tick(1);
    p.tick(2);
    p.finish();
    expect(out.text().trim().split('\n')).toHaveLength(1);
    expect(out.text()).toMatch(/^eval loss \[#{20}\] 3\/3 /);
  });
});
