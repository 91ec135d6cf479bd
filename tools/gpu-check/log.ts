import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A log that prints each line and appends it to OUT_DIR/FILE (started empty), so a cut-off run keeps what it printed. */
export function openLog(outDir: string, file: string): (line: string) => void {
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, file);
  writeFileSync(path, '');
  return (line) => {
    console.log(line);
    appendFileSync(path, `${line}\n`);
  };
}
