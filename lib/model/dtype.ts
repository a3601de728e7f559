/** Element types of checkpoint tensors and their sizes. */
export type DType = "bf16" | "f16" | "f32" | "i32" | "i64" | "u8" | "bool" | "f8_e4m3";

export const DTYPE_BYTES: Record<DType, number> = {
  bf16: 2,
  f16: 2,
  f32: 4,
  i32: 4,
  i64: 8,
  u8: 1,
  bool: 1,
  f8_e4m3: 1,
};

const FROM_SAFETENSORS: Record<string, DType> = {
  BF16: "bf16",
  F16: "f16",
  F32: "f32",
  I32: "i32",
  I64: "i64",
  U8: "u8",
  BOOL: "bool",
  F8_E4M3: "f8_e4m3",
};

/** The DType of a safetensors header dtype ("BF16", …), or undefined for one this package does not read. */
export function dtypeFromSafetensors(s: string): DType | undefined {
  return Object.hasOwn(FROM_SAFETENSORS, s) ? FROM_SAFETENSORS[s] : undefined;
}

/** Number of elements of a tensor of this shape (1 for a scalar, shape []). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}
