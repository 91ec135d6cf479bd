/**
 * PostgreSQL URLs as every layer sees them: what marks a URL (anything starting postgres:), the
 * database it names, and the URL without its password, the form records and reports carry (the
 * password comes from the URL given at run time or PGPASSWORD, never from a written file).
 */
export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:/i.test(spec);
}

/** The URL with any password removed; a URL that does not parse is returned as given. */
export function withoutPassword(spec: string): string {
  try {
    const url = new URL(spec);
    if (url.password === '') return spec;
    url.password = '';
    return url.toString();
  } catch {
    return spec;
  }
}

/** The database a URL names, or null where it names none (or does not parse). */
export function urlDatabaseName(spec: string): string | null {
  try {
    const db = decodeURIComponent(new URL(spec).pathname.replace(/^\//, ''));
    return db === '' ? null : db;
  } catch {
    return null;
  }
}
