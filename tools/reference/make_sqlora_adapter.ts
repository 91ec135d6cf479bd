/**
 * Writes the adapter of test/helpers/sqlora-adapter.ts with sqlora's PEFT writer into
 * test/fixtures/sqlora-adapter/adapter/, for tools/reference/peft_load_check.py to load in PEFT.
 * Usage: npx tsx tools/reference/make_sqlora_adapter.ts
 */
import { join } from 'node:path';
import { writePeftAdapter } from '../../src/lora/peft.js';
import { sqloraTestAdapter } from '../../test/helpers/sqlora-adapter.js';

const root = join(import.meta.dirname, '..', '..');
const model = join(root, 'test', 'fixtures', 'tiny', 'gqa', 'model');
const out = join(root, 'test', 'fixtures', 'sqlora-adapter', 'adapter');
writePeftAdapter(out, sqloraTestAdapter(model), { baseModelNameOrPath: 'test/fixtures/tiny/gqa/model' });
process.stdout.write(`wrote ${out}\n`);
