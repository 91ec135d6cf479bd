// Library code (src/api/train-data.ts); these names stay importable from here.
export { endOfTurnIds, readRecords, tokenizeRecords, type TokenizedSplit } from '../../api/train-data.js';
