/** Test helpers: seeded random data, bf16 conversion, native tensors from arrays, comparisons. */
import { type DeviceName, type NativeTensor, native } from "../../lib/native.js";

/** Deterministic PRNG (mulberry32) so a failing case can be replayed from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return out;
}

export function uniform(n: number, r: () => number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round to nearest even bf16, returned as its 16 bits. */
export function toBf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBf16Bits(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

/** Values rounded through bf16, so CPU references see exactly what the GPU sees. */
export function roundBf16(a: Float32Array): Float32Array {
  return a.map((x) => fromBf16Bits(toBf16Bits(x)));
}

export function tensor(data: Float32Array | Int32Array | BigInt64Array | Uint8Array, dtype: "bf16" | "f32" | "i32" | "i64" | "u8",
  shape: number[], device: DeviceName): NativeTensor {
  let bytes: ArrayBufferView;
  if (dtype === "bf16") bytes = Uint16Array.from(data as Float32Array, (x) => toBf16Bits(x));
  else bytes = data;
  return native().NativeTensor.fromBytes(bytes, dtype, shape, device);
}

/** An output tensor filled with 0xFF bytes (NaN in float types), so unwritten elements show. */
export function poisoned(dtype: "bf16" | "f32" | "i32" | "i64", shape: number[], device: DeviceName): NativeTensor {
  const n = shape.reduce((a, b) => a * b, 1) * (dtype === "bf16" ? 2 : dtype === "i64" ? 8 : 4);
  return native().NativeTensor.fromBytes(new Uint8Array(n).fill(0xff), dtype, shape, device);
}

export function values(t: NativeTensor): Float32Array {
  const b = t.toBytes();
  if (t.dtype === "f32") return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
  if (t.dtype === "bf16") return Float32Array.from(new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2), fromBf16Bits);
  if (t.dtype === "i32") return Float32Array.from(new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4));
  throw new Error(`values(): unsupported dtype ${t.dtype}`);
}

/** ‖a − b‖ / ‖b‖, NaN (or any non-finite value in a) giving Infinity. */
export function relError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

export function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

export const hasCuda = (() => {
  try {
    const st = native().cudaStatus();
    return st.compiled && !st.error && st.gpus.length > 0;
  } catch {
    return false;
  }
})();
