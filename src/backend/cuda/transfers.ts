/**
 * Copies between host and device for the CUDA backend. Uploads of 16-bit floats stage f32 chunks
 * on the device and convert there (rounding to nearest even); downloads wait for the stream and
 * bring the device error word along, so kernels' reports of invalid input surface here.
 */
import { f16ToF32, bf16ToF32 } from '../../tensor/dtype.js';
import { NF4_BLOCKSIZE, NF4_CODE } from '../../tensor/nf4-blocks.js';
import {
  checkNf4Payload,
  checkNf4Values,
  checkUploadSize,
  type FloatDType,
  type HostFloats,
  type Nf4Weight,
  type PendingDownload,
  type Tensor,
  type TensorDType,
} from '../backend.js';
import type { CudaBackend } from './cuda-backend.js';
import { asCuda, CudaTensor, elementBytes, type Block } from './cuda-tensor.js';
import { DTYPE_CODE } from './kernels/common.js';
import { ELEMENTWISE } from './kernels/elementwise.js';
import { elementwise, gridFor, ptrArg } from './launch.js';

/** Elements converted per staged upload chunk (64 MiB of f32). */
const UPLOAD_CHUNK = 1 << 24;

export function upload(
  cb: CudaBackend,
  data: HostFloats | Int32Array,
  shape: readonly number[],
  dtype: TensorDType = 'f32',
): Tensor {
  const n = checkUploadSize(data, shape);
  const t = cb.raw(shape, dtype, 'upload');
  if (dtype === 'i32') {
    cb.device.upload(t.ptr, data instanceof Int32Array ? data : Int32Array.from(data));
  } else if (dtype === 'f32') {
    cb.device.upload(t.ptr, data instanceof Float32Array ? data : Float32Array.from(data));
  } else {
    // 16-bit floats: stage f32 chunks on the device and convert there (rounding to nearest even).
    const src = data instanceof Float32Array ? data : Float32Array.from(data);
    const stage = cb.device.allocator.alloc(Math.min(n, UPLOAD_CHUNK) * 4);
    const fn = cb.device.kernel(ELEMENTWISE, 'convert');
    for (let i = 0; i < n; i += UPLOAD_CHUNK) {
      const m = Math.min(UPLOAD_CHUNK, n - i);
      cb.device.upload(stage.ptr, src.subarray(i, i + m));
      cb.device.launch(fn, [gridFor(cb.device, m)], 256, 0, [
        t.ptr + i * 2,
        DTYPE_CODE[dtype as FloatDType],
        stage.ptr,
        DTYPE_CODE.f32,
        m,
      ]);
    }
    cb.device.allocator.release(stage.ptr, stage.size);
  }
  return t;
}

export function uploadNf4(cb: CudaBackend, w: Nf4Weight): Tensor {
  checkNf4Payload(w);
  const n = w.shape[0] * w.shape[1];
  const put = (data: Uint8Array | Float32Array): Block => {
    const b = cb.device.allocator.alloc(data.byteLength);
    cb.device.upload(b.ptr, data);
    return b;
  };
  const codes = put(w.codes.subarray(0, Math.ceil(n / 2)));
  const absmax = put(w.absmax.subarray(0, Math.ceil(n / w.blockSize)));
  const code = put(Float32Array.from(w.code));
  return new CudaTensor([...w.shape], 'nf4', codes.ptr, [codes, absmax, code], null, {
    absmax: absmax.ptr,
    code: code.ptr,
    blockSize: w.blockSize,
  });
}

export function quantizeNf4(
  cb: CudaBackend,
  values: Float32Array,
  shape: [number, number],
  scales: (absmax: Float32Array) => Float32Array,
): Tensor {
  checkNf4Values(values, shape);
  const n = values.length,
    blocks = Math.ceil(n / NF4_BLOCKSIZE);
  const alloc = cb.device.allocator;
  const src = cb.upload(values, [n]);
  const codes = alloc.alloc(Math.ceil(n / 2)),
    code = alloc.alloc(NF4_CODE.byteLength);
  const absmax = cb.raw([blocks], 'f32', 'quantizeNf4');
  cb.device.upload(code.ptr, NF4_CODE);
  // One warp (32 threads) per block of 64.
  elementwise(cb.device, 'nf4_quantize64', 32 * blocks, [codes.ptr, absmax.ptr, ptrArg(src), code.ptr, n]);
  cb.free(src);
  // The scales from the absmax on the host (double quantization is a few operations per 64 weights), written over them.
  cb.device.upload(absmax.ptr, scales(cb.download(absmax) as Float32Array));
  return new CudaTensor([...shape], 'nf4', codes.ptr, [codes, ...absmax.blocks, code], null, {
    absmax: absmax.ptr,
    code: code.ptr,
    blockSize: NF4_BLOCKSIZE,
  });
}

export function download(cb: CudaBackend, t: Tensor): HostFloats {
  const c = asCuda(t, 'download');
  if (c.dtype === 'nf4') throw new TypeError('download: nf4 tensors are write-only');
  const n = c.size;
  let out: Float32Array;
  if (c.dtype === 'f32') {
    out = new Float32Array(n);
    cb.device.download(out, c.ptr);
    cb.errors.finish();
  } else if (c.dtype === 'i32') {
    const ints = new Int32Array(n);
    cb.device.download(ints, c.ptr);
    cb.errors.finish();
    out = Float32Array.from(ints);
  } else {
    const bits = new Uint16Array(n);
    cb.device.download(bits, c.ptr);
    cb.errors.finish();
    out = c.dtype === 'bf16' ? bf16ToF32(bits) : f16ToF32(bits);
  }
  return out;
}

export function downloadAsync(cb: CudaBackend, t: Tensor): PendingDownload {
  const c = asCuda(t, 'downloadAsync');
  if (c.dtype === 'nf4') throw new TypeError('downloadAsync: nf4 tensors are write-only');
  const dtype = c.dtype;
  const bytes = c.size * elementBytes(dtype);
  // The error word comes along, so kernels' reports surface here as they do in download().
  const copy = cb.hostCopies.start([
    { src: c.ptr, bytes },
    { src: cb.errors.ptr, bytes: 4 },
  ]);
  let values: HostFloats | null = null;
  return {
    wait: () => {
      if (values) return values;
      const raw = cb.hostCopies.wait(copy);
      cb.errors.report(new DataView(raw.buffer).getInt32(bytes, true));
      const data = raw.buffer.slice(0, bytes);
      values =
        dtype === 'f32'
          ? new Float32Array(data)
          : dtype === 'i32'
            ? Float32Array.from(new Int32Array(data))
            : dtype === 'bf16'
              ? bf16ToF32(new Uint16Array(data))
              : f16ToF32(new Uint16Array(data));
      return values;
    },
  };
}
