/**
 * Where exports go: progress reports, and files and folders written beside their final name
 * and renamed into place, so an interrupted export never leaves a complete-looking result.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UserError, describeError } from '../util/errors.js';
import { Progress } from '../util/progress.js';

export interface ExportProgressEvent {
  /** What is being done: 'merge' (tensors into the folder), 'gguf' (tensors into the file), 'lora'. */
  stage: string;
  done: number;
  total: number;
  /** The tensor just finished. */
  item?: string;
}

export type ExportProgress = (e: ExportProgressEvent) => void;

/** One progress bar per export stage, created on its first event, naming the tensor just finished. */
export function exportProgressBars(quiet: boolean): { onProgress: ExportProgress; finish(): void } {
  let bar: Progress | undefined;
  let stage = '';
  return {
    onProgress(e) {
      if (!bar || stage !== e.stage) {
        bar?.finish();
        stage = e.stage;
        bar = new Progress({ label: `export ${e.stage}`, total: e.total, unit: 'tensors', quiet });
      }
      bar.tick(1, e.item ? { tensor: e.item } : undefined);
    },
    finish() {
      bar?.finish();
      bar = undefined;
    },
  };
}

/** Makes sure `dir` exists and can be written to; the error names it. */
export function ensureWritableDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    const probe = join(dir, `.sqlora-write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (err) {
    throw new UserError(`cannot write to ${dir}: ${describeError(err)} (choose another --out)`);
  }
}

/**
 * A fresh temporary folder beside `outDir` for the export to fill; `outDir` itself must not
 * exist yet (or be empty) unless `overwrite`.
 */
export function prepareOutDir(outDir: string, overwrite: boolean): string {
  if (existsSync(outDir)) {
    if (!statSync(outDir).isDirectory()) throw new UserError(`--out ${outDir} exists and is not a folder`);
    if (!overwrite && readdirSync(outDir).length > 0)
      throw new UserError(`--out ${outDir} already exists and is not empty (pass --overwrite to replace it)`);
  }
  const parent = dirname(outDir);
  ensureWritableDir(parent);
  const tmp = join(parent, `.${basename(outDir)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  return tmp;
}

/** Moves the finished temporary folder to `outDir` (replacing it); with null, discards it. */
export function commitDir(tmp: string, outDir: string | null): void {
  if (outDir === null) {
    rmSync(tmp, { recursive: true, force: true });
    return;
  }
  rmSync(outDir, { recursive: true, force: true });
  renameSync(tmp, outDir);
}
