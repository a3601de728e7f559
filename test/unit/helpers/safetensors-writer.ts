/** Writes synthetic safetensors files for tests, well-formed or deliberately broken. */
import { writeFile } from "node:fs/promises";

export interface TensorSpec {
  name: string;
  shape: number[];
  /** safetensors spelling; BF16 when left out. */
  dtype?: string;
}

// Kept apart from lib/model/dtype.ts so that the tests do not grade the reader with its own table.
const BYTES: Record<string, number> = { BF16: 2, F16: 2, F32: 4, I32: 4, I64: 8, U8: 1, BOOL: 1, F8_E4M3: 1 };

/** The header of `tensors` stored back to back in this order, and the size of their data. */
function packedHeader(
  tensors: TensorSpec[],
  metadata?: Record<string, string>,
): { header: Record<string, unknown>; dataLength: number } {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let end = 0;
  for (const { name, shape, dtype = "BF16" } of tensors) {
    const begin = end;
    end += shape.reduce((n, d) => n * d, 1) * BYTES[dtype];
    header[name] = { dtype, shape, data_offsets: [begin, end] };
  }
  return { header, dataLength: end };
}

/** A valid file: `tensors` packed in order, then `trailing` spare bytes. */
export async function writeSafetensors(
  path: string,
  tensors: TensorSpec[],
  opts: { metadata?: Record<string, string>; trailing?: number } = {},
): Promise<void> {
  const { header, dataLength } = packedHeader(tensors, opts.metadata);
  await writeRawSafetensors(path, header, dataLength + (opts.trailing ?? 0));
}

/**
 * Any header (an object to serialise, JSON text, or raw bytes) followed by `dataLength` bytes
 * whose value is their offset in the data region mod 256; `headerLength` overrides the length field.
 */
export async function writeRawSafetensors(
  path: string,
  header: unknown,
  dataLength: number,
  opts: { headerLength?: bigint } = {},
): Promise<void> {
  const bytes = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(opts.headerLength ?? BigInt(bytes.length));
  const data = Buffer.alloc(dataLength);
  for (let i = 0; i < dataLength; i++) data[i] = i & 255;
  await writeFile(path, Buffer.concat([length, bytes, data]));
}
