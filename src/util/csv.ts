/**
 * CSV as Python's csv module reads it (RFC 4180; MMLU's files and question/SQL pairs): fields
 * separated by commas, quoted fields may hold commas, newlines and doubled quotes. Each record
 * keeps the line it starts on, so errors can name file:line.
 */
import { UserError } from './errors.js';

export interface CsvRecord {
  /** 1-based line of the record's first character. */
  line: number;
  fields: string[];
}

export function parseCsv(text: string, path: string): CsvRecord[] {
  const out: CsvRecord[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) throw new UserError(`${path}:${start}: a quoted field is not closed before the end of the file`);
          const ch = text[i];
          if (ch === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (ch === '\n') line++;
          field += ch;
          i++;
        }
        // Python's csv keeps text after a closing quote as part of the field.
        while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') field += text[i++];
      } else {
        while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') field += text[i++];
      }
      fields.push(field);
      if (text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (text[i] === '\r') i++;
    if (text[i] === '\n') {
      i++;
      line++;
    }
    // Python's csv skips blank lines.
    if (fields.length === 1 && fields[0] === '') continue;
    out.push({ line: start, fields });
  }
  return out;
}
