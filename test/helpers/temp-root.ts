/**
 * vitest globalSetup: the test processes' temporary folders (os.tmpdir(), read from TMPDIR) go
 * under one folder of this run, removed when the run ends, so tests that make folders for
 * outputs and checkpoints leave nothing behind, however they end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'sqlora-test-'));
  process.env.TMPDIR = root;
  return () => rmSync(root, { recursive: true, force: true });
}
