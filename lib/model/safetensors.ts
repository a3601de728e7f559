/**
 * safetensors header reader. A file is an 8-byte little-endian header length, a JSON header and a
 * data region; only the first two are read here, and every entry is checked so that the native
 * loader can trust the offsets it is given.
 */
import { type FileHandle, open } from "node:fs/promises";
import { resolve } from "node:path";
import { badCheckpoint } from "../errors.js";
import { type DType, DTYPE_BYTES, dtypeFromSafetensors, numel } from "./dtype.js";

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute path of the file holding the data. */
  file: string;
  /** Absolute byte offset of the data in the file. */
  dataOffset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  /** Absolute path. */
  path: string;
  fileSize: number;
  headerLength: number;
  metadata: Record<string, string>;
  tensors: Map<string, TensorEntry>;
}

/** Refused before anything is allocated for it (the safetensors crate's own limit is 100 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export async function readSafetensorsHeader(path: string): Promise<SafetensorsFile> {
  const file = resolve(path);
  const fh = await openFile(file);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw badCheckpoint(`${file}: not a regular file`);
    const fileSize = st.size;
    if (fileSize < 8)
      throw badCheckpoint(`${file}: ${fileSize} bytes is too short for a safetensors file (8-byte header length)`);
    const n = (await readExactly(fh, file, 8, 0)).readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES))
      throw badCheckpoint(`${file}: header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit (huge header)`);
    const headerLength = Number(n);
    if (8 + headerLength > fileSize)
      throw badCheckpoint(`${file}: header length ${headerLength} runs past the end of the file (${fileSize} bytes)`);
    const bytes = await readExactly(fh, file, headerLength, 8);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (err) {
      throw badCheckpoint(`${file}: header is not valid UTF-8`, err);
    }
    return parseHeader(file, fileSize, headerLength, text);
  } finally {
    await fh.close();
  }
}

async function openFile(file: string): Promise<FileHandle> {
  try {
    return await open(file, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw badCheckpoint(code === "ENOENT" ? `${file}: no such file` : `${file}: cannot be opened (${code ?? err})`, err);
  }
}

async function readExactly(fh: FileHandle, file: string, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw badCheckpoint(`${file}: ended while reading the header (was it truncated?)`);
    done += bytesRead;
  }
  return buf;
}

function parseHeader(file: string, fileSize: number, headerLength: number, text: string): SafetensorsFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw badCheckpoint(`${file}: header is not valid JSON (${(err as Error).message})`, err);
  }
  if (!isObject(json)) throw badCheckpoint(`${file}: header is not a JSON object`);
  const dup = findDuplicateKey(text);
  if (dup)
    throw badCheckpoint(
      dup.path.length === 0
        ? `${file}: header names tensor "${dup.key}" twice`
        : `${file}: header has key "${dup.key}" twice in ${dup.path.join(".")}`,
    );
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(file, value);
    else tensors.set(name, parseEntry(file, name, value, dataStart, dataLength));
  }
  checkOverlaps(file, [...tensors.values()]);
  return { path: file, fileSize, headerLength, metadata, tensors };
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === "string"))
    throw badCheckpoint(`${file}: __metadata__ must map strings to strings, got ${JSON.stringify(value)}`);
  return value as Record<string, string>;
}

function parseEntry(file: string, name: string, v: unknown, dataStart: number, dataLength: number): TensorEntry {
  const where = `${file}: tensor "${name}"`;
  if (!isObject(v)) throw badCheckpoint(`${where}: entry is not an object`);
  const dtype = typeof v.dtype === "string" ? dtypeFromSafetensors(v.dtype) : undefined;
  if (!dtype) throw badCheckpoint(`${where}: unknown dtype ${JSON.stringify(v.dtype)}`);
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every(isCount))
    throw badCheckpoint(`${where}: shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
  const offsets = v.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1])
    throw badCheckpoint(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
  const [begin, end] = offsets as [number, number];
  const bytes = numel(shape) * DTYPE_BYTES[dtype];
  if (end - begin !== bytes)
    throw badCheckpoint(
      `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${v.dtype} [${shape}] needs ${bytes}`,
    );
  if (end > dataLength)
    throw badCheckpoint(`${where}: data_offsets [${begin}, ${end}] run past the data region (${dataLength} bytes)`);
  return { name, dtype, shape, file, dataOffset: dataStart + begin, byteLength: bytes };
}

function checkOverlaps(file: string, entries: TensorEntry[]): void {
  const sorted = entries.filter((e) => e.byteLength > 0).sort((a, b) => a.dataOffset - b.dataOffset);
  // Until the first overlap, the ranges seen are disjoint, so the previous one reaches furthest.
  for (let i = 1; i < sorted.length; i++) {
    const [prev, e] = [sorted[i - 1], sorted[i]];
    if (e.dataOffset < prev.dataOffset + prev.byteLength)
      throw badCheckpoint(`${file}: tensors "${prev.name}" and "${e.name}" overlap`);
  }
}

/**
 * The first key that occurs twice in one object of a valid JSON text, with the keys leading to
 * that object (array levels left out). JSON.parse silently keeps the last duplicate.
 */
export function findDuplicateKey(text: string): { path: string[]; key: string } | undefined {
  const stack: Array<{ keys?: Set<string>; key?: string }> = []; // keys: only for objects
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
      const top = stack[stack.length - 1];
      if (!expectKey || !top?.keys) continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (top.keys.has(key)) return { path: stack.slice(0, -1).flatMap((f) => (f.keys ? [f.key!] : [])), key };
      top.keys.add(key);
      top.key = key;
      expectKey = false;
    } else if (c === "{" || c === "[") {
      stack.push(c === "{" ? { keys: new Set() } : {});
      expectKey = c === "{";
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = stack[stack.length - 1]?.keys !== undefined;
    }
  }
  return undefined;
}

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
