/**
 * The reference workflow's post-processing: cut at `<|im_end|>` (and `<|endoftext|>`), at the
 * first blank line and after the first `;` (kept), drop non-ASCII characters, collapse
 * whitespace. Leading whitespace is dropped first, so a reply opening with a blank line still
 * yields its SQL.
 */
export function extractSql(raw: string): string {
  let s = raw;
  for (const stop of ['<|im_end|>', '<|endoftext|>']) {
    const at = s.indexOf(stop);
    if (at >= 0) s = s.slice(0, at);
  }
  s = s.trimStart();
  const blank = /\n[ \t\r]*\n/.exec(s);
  if (blank) s = s.slice(0, blank.index);
  const semi = s.indexOf(';');
  if (semi >= 0) s = s.slice(0, semi + 1);
  return (
    s
      // eslint-disable-next-line no-control-regex
      .replace(/[^\x00-\x7f]/g, '')
      .replace(/\s+/g, ' ')
      .trim()
  );
}
