import { fileURLToPath } from 'node:url';

/**
 * The small Spider subset shipped with sqlora (six databases, official layout; see its
 * SOURCES.md): what `sqlora demo` runs on without network. The path is the same from src/demo/
 * and from the compiled dist/demo/.
 */
export const BUNDLED_SPIDER_DIR = fileURLToPath(new URL('../../test/fixtures/spider/', import.meta.url));
