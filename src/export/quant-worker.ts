/** Worker thread of QuantPool: quantizes row chunks to a ggml type and sends the bytes back. */
import { parentPort } from 'node:worker_threads';
import { GGML_TYPES, type GgmlType } from './gguf-format.js';

export interface QuantJob {
  id: number;
  type: GgmlType;
  values: Float32Array;
}

parentPort?.on('message', (job: QuantJob) => {
  const bytes = GGML_TYPES[job.type].quantize(job.values);
  // F32 "quantizes" to a view of its input; send a buffer of its own.
  const own = bytes.buffer === job.values.buffer ? bytes.slice() : bytes;
  parentPort?.postMessage({ id: job.id, bytes: own }, [own.buffer as ArrayBuffer]);
});
