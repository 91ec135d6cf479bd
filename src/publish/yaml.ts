/**
 * The YAML a model card's front matter needs: nested mappings, sequences and scalars, in block
 * style. Strings are written plain where YAML reads them back as the same string, else
 * double-quoted (a JSON string is a valid YAML double-quoted scalar).
 */
export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue | undefined };

// Plain scalars that YAML 1.1 or 1.2 would read as something other than a string.
const NOT_A_STRING =
  /^(?:~|null|true|false|yes|no|on|off|y|n|[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:e[-+]?\d+)?|[-+]?\.(?:inf|nan)|0x[0-9a-f]+|0o[0-7]+)$/i;

function scalar(v: string | number | boolean | null): string {
  if (v === null) return 'null';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`internal: ${v} in YAML`);
    return String(v);
  }
  if (typeof v === 'boolean') return String(v);
  return /^[A-Za-z0-9_./][\w ./()-]*$/.test(v) && !/ $/.test(v) && !NOT_A_STRING.test(v) ? v : JSON.stringify(v);
}

const isObject = (v: YamlValue | undefined): v is { [key: string]: YamlValue | undefined } =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function lines(v: YamlValue, indent: string): string[] {
  if (Array.isArray(v)) {
    if (v.length === 0) return [`${indent}[]`];
    return v.flatMap((item) => {
      const inner = lines(item, indent + '  ');
      // A sequence item starts on the dash line: "- key: value" or "- scalar".
      return [`${indent}- ${inner[0].trimStart()}`, ...inner.slice(1)];
    });
  }
  if (isObject(v)) {
    const out: string[] = [];
    for (const [key, value] of Object.entries(v)) {
      if (value === undefined) continue;
      const k = scalar(key);
      if ((Array.isArray(value) && value.length > 0) || (isObject(value) && Object.keys(value).length > 0)) {
        out.push(`${indent}${k}:`, ...lines(value, Array.isArray(value) ? indent : indent + '  '));
      } else {
        out.push(`${indent}${k}: ${Array.isArray(value) ? '[]' : isObject(value) ? '{}' : scalar(value)}`);
      }
    }
    return out;
  }
  return [`${indent}${scalar(v)}`];
}

/** A mapping as YAML lines (no document markers), ending with a newline. */
export function toYaml(doc: { [key: string]: YamlValue | undefined }): string {
  return lines(doc, '').join('\n') + '\n';
}
