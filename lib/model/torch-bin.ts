/**
 * Reader for pytorch_model.bin as torch.save has written it since PyTorch 1.6: a zip archive of
 * uncompressed entries under one folder (data.pkl, byteorder, data/<key> per storage, ...). Only the
 * zip directory and data.pkl are read. data.pkl is never executed: a restricted unpickler accepts
 * the opcodes and globals a state dict of tensors uses and refuses everything else, and tensors
 * come out as offsets into the file, checked like safetensors entries.
 */
import { type FileHandle, open } from "node:fs/promises";
import { resolve } from "node:path";
import { badCheckpoint, unsupportedModel } from "../errors.js";
import { type DType, DTYPE_BYTES, numel } from "./dtype.js";
import type { TensorEntry } from "./safetensors.js";

export interface TorchBinFile {
  /** Absolute path. */
  path: string;
  tensors: Map<string, TensorEntry>;
}

/** Refused before allocation; data.pkl takes about 100 bytes per tensor (a few KB for a draft). */
export const MAX_PICKLE_BYTES = 64 * 1024 * 1024;
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;

const V2 = "torch._utils._rebuild_tensor_v2";
const V3 = "torch._utils._rebuild_tensor_v3"; // torch ≥ 2.1 for dtypes without a legacy storage class
const PARAM = "torch._utils._rebuild_parameter";
const PARAM_STATE = "torch._utils._rebuild_parameter_with_state";
const ORDERED_DICT = "collections.OrderedDict";
const CALLABLE = new Set([ORDERED_DICT, V2, V3, PARAM, PARAM_STATE]);

/** Storage classes torch pickles (torch/storage.py _dtype_to_storage_type_map) → their dtype. */
const STORAGE_DTYPES: Record<string, string> = {
  "torch.HalfStorage": "float16",
  "torch.BFloat16Storage": "bfloat16",
  "torch.FloatStorage": "float32",
  "torch.LongStorage": "int64",
  "torch.IntStorage": "int32",
  "torch.BoolStorage": "bool",
  "torch.ByteStorage": "uint8",
  "torch.DoubleStorage": "float64",
  "torch.ShortStorage": "int16",
  "torch.CharStorage": "int8",
  "torch.ComplexDoubleStorage": "complex128",
  "torch.ComplexFloatStorage": "complex64",
  "torch.QInt8Storage": "qint8",
  "torch.QInt32Storage": "qint32",
  "torch.QUInt8Storage": "quint8",
  "torch.QUInt4x2Storage": "quint4x2",
  "torch.QUInt2x4Storage": "quint2x4",
  "torch.storage.UntypedStorage": "uint8",
};
/** dtypes that _rebuild_tensor_v3 names (torch/storage.py _new_dtypes). */
const V3_DTYPES = [
  "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz", "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
  "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2", "complex32", "uint16", "uint32", "uint64",
];
const DTYPE_GLOBALS = new Set([...Object.values(STORAGE_DTYPES), ...V3_DTYPES].map((d) => `torch.${d}`));
const allowedGlobal = (path: string) =>
  CALLABLE.has(path) || Object.hasOwn(STORAGE_DTYPES, path) || DTYPE_GLOBALS.has(path);
const SUPPORTED: Record<string, DType> = {
  float16: "f16",
  bfloat16: "bf16",
  float32: "f32",
  int64: "i64",
  int32: "i32",
  bool: "bool",
  uint8: "u8",
  float8_e4m3fn: "f8_e4m3",
};

export async function readTorchBin(path: string): Promise<TorchBinFile> {
  const file = resolve(path);
  let fh: FileHandle;
  try {
    fh = await open(file, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw badCheckpoint(code === "ENOENT" ? `${file}: no such file` : `${file}: cannot be opened (${code ?? err})`, err);
  }
  try {
    const zip = await readZip(fh, file);
    const record = (name: string) => zip.entries.get(`${zip.prefix}/${name}`);
    if (record("constants.pkl"))
      throw badCheckpoint(`${file}: a TorchScript archive (torch.jit.save), not a torch.save checkpoint`);
    const byteorder = record("byteorder");
    if (byteorder) {
      const order = (await zip.read(byteorder, 16)).toString("latin1");
      if (order === "big") throw unsupportedModel(`${file}: tensors are stored big-endian (byteorder "big")`);
      if (order !== "little") throw badCheckpoint(`${file}: byteorder record is ${JSON.stringify(order)}`);
    }
    const pkl = record("data.pkl");
    if (!pkl) throw badCheckpoint(`${file}: no ${zip.prefix}/data.pkl in the archive (not a torch.save checkpoint)`);
    const root = unpickle(await zip.read(pkl, MAX_PICKLE_BYTES), `${file}: data.pkl`);
    if (!(root instanceof Map)) throw badCheckpoint(`${file}: data.pkl holds ${describe(root)}, not a dict of tensors`);
    const storages = new Storages(zip);
    const tensors = new Map<string, TensorEntry>();
    for (const [name, value] of root) {
      if (typeof name !== "string")
        throw badCheckpoint(`${file}: data.pkl has a key ${String(name)} that is not a string`);
      tensors.set(name, await tensorEntry(storages, file, name, value));
    }
    return { path: file, tensors };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Tensors

async function tensorEntry(storages: Storages, file: string, name: string, value: Value): Promise<TensorEntry> {
  const where = `${file}: tensor "${name}"`;
  const bad = (msg: string) => badCheckpoint(`${where}: ${msg}`);
  // nn.Parameter pickles as _rebuild_parameter(data, requires_grad, hooks[, state]) around the tensor.
  const t = value instanceof Call && (value.func === PARAM || value.func === PARAM_STATE) ? value.args[0] : value;
  if (!(t instanceof Call) || (t.func !== V2 && t.func !== V3)) throw bad(`is ${describe(value)}, not a tensor`);
  const v3 = t.func === V3 ? 1 : 0;
  if (t.args.length < 6 + v3 || t.args.length > 7 + v3)
    throw bad(`${t.func} has ${t.args.length} arguments, not ${6 + v3} or ${7 + v3}`);
  const [persistent, offset, size, stride] = t.args;
  const pid = persistent instanceof Persistent ? persistent.pid : undefined;
  if (
    !(pid instanceof Tuple) ||
    pid.items.length !== 5 ||
    pid.items[0] !== "storage" ||
    !(pid.items[1] instanceof Global) ||
    !Object.hasOwn(STORAGE_DTYPES, pid.items[1].path) ||
    typeof pid.items[2] !== "string" ||
    !isCount(pid.items[4])
  )
    throw bad(`its storage is not a ('storage', <storage class>, key, location, numel) persistent id`);
  const [, { path: storageClass }, key, , storageNumel] = pid.items as [string, Global, string, string, number];

  const dtypeArg = t.args[6];
  if (v3 && !(dtypeArg instanceof Global && DTYPE_GLOBALS.has(dtypeArg.path)))
    throw bad(`${V3} names ${describe(dtypeArg)} where a torch dtype belongs`);
  if (v3 && storageClass !== "torch.storage.UntypedStorage") throw bad(`${V3} over a ${storageClass}, not bytes`);
  const torchDtype = v3 ? (dtypeArg as Global).path.slice("torch.".length) : STORAGE_DTYPES[storageClass];
  const dtype = SUPPORTED[torchDtype];
  if (!dtype)
    throw unsupportedModel(
      `${where}: dtype torch.${torchDtype} (${v3 ? V3 : storageClass}) is not supported; ` +
        `supported: ${Object.keys(SUPPORTED).join(", ")}`,
    );
  const metadata = t.args[6 + v3];
  if (metadata !== undefined && !(metadata instanceof Map && metadata.size === 0))
    throw unsupportedModel(`${where}: carries tensor metadata ${describe(metadata)} (a lazily negated or conjugated view)`);

  if (!isCount(offset)) throw bad(`storage offset ${describe(offset)} is not a non-negative integer`);
  if (!(size instanceof Tuple && size.items.every(isCount)))
    throw bad(`size ${describe(size)} is not a tuple of non-negative integers`);
  const shape = size.items as number[];
  if (!(stride instanceof Tuple && stride.items.length === shape.length && stride.items.every(isCount)))
    throw bad(`stride ${describe(stride)} does not match size (${shape})`);
  if (!isContiguous(shape, stride.items as number[]))
    throw bad(`size (${shape}) with stride (${stride.items}) is not contiguous; save tensor.contiguous() instead`);

  const elementBytes = DTYPE_BYTES[dtype];
  const storageBytes = storageNumel * (v3 ? 1 : elementBytes);
  const start = await storages.dataOffset(where, key, storageClass, storageNumel, storageBytes);
  const byteLength = numel(shape) * elementBytes;
  if (offset * elementBytes + byteLength > storageBytes)
    throw bad(
      `elements [${offset}, ${offset + numel(shape)}) lie outside its storage data/${key} ` +
        `of ${storageBytes / elementBytes} elements`,
    );
  return { name, dtype, shape, file, dataOffset: start + offset * elementBytes, byteLength };
}

/** torch's own rule (c10 compute_contiguous): strides of size-1 dims are free, empty tensors always qualify. */
function isContiguous(shape: number[], stride: number[]): boolean {
  if (numel(shape) === 0) return true;
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/** Storage entries, each checked once however many tensors view it. */
class Storages {
  private readonly seen = new Map<string, { storageClass: string; numel: number; start: number }>();
  constructor(private readonly zip: Zip) {}

  async dataOffset(where: string, key: string, storageClass: string, numel: number, bytes: number): Promise<number> {
    const prev = this.seen.get(key);
    if (prev) {
      if (prev.storageClass !== storageClass || prev.numel !== numel)
        throw badCheckpoint(
          `${where}: storage data/${key} is ${storageClass} of ${numel} here ` +
            `but ${prev.storageClass} of ${prev.numel} elsewhere`,
        );
      return prev.start;
    }
    const entry = this.zip.entries.get(`${this.zip.prefix}/data/${key}`);
    if (!entry) throw badCheckpoint(`${where}: its storage ${this.zip.prefix}/data/${key} is missing from the archive`);
    const start = await this.zip.dataStart(entry);
    if (entry.size !== bytes)
      throw badCheckpoint(
        `${where}: storage data/${key} holds ${entry.size} bytes, but ${storageClass} of ${numel} elements needs ${bytes}`,
      );
    this.seen.set(key, { storageClass, numel, start });
    return start;
  }
}

// ---------------------------------------------------------------------------------------------
// ZIP (APPNOTE.TXT 4.3; torch writes it with miniz, zip64 records always present)

interface ZipEntry {
  name: string;
  rawName: Buffer;
  flags: number;
  method: number;
  compressedSize: number;
  size: number;
  headerOffset: number;
}

interface Zip {
  /** The folder every entry lives in; torch takes it from the first entry, as here. */
  prefix: string;
  entries: Map<string, ZipEntry>;
  /** Absolute offset of an entry's data, once it is known to be stored and inside the file. */
  dataStart(e: ZipEntry): Promise<number>;
  read(e: ZipEntry, maxBytes: number): Promise<Buffer>;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const U32_MAX = 0xffffffff;

async function readZip(fh: FileHandle, file: string): Promise<Zip> {
  const st = await fh.stat();
  if (!st.isFile()) throw badCheckpoint(`${file}: not a regular file`);
  const fileSize = st.size;
  const head = await readAt(fh, file, Math.min(4, fileSize), 0);
  if (head.length < 4 || head.readUInt32LE(0) !== SIG_LOCAL)
    throw badCheckpoint(
      head[0] === 0x80
        ? `${file}: written in torch.save's legacy format (PyTorch < 1.6 or _use_new_zipfile_serialization=False), ` +
            `which is not read; re-save it with a current PyTorch or convert it to safetensors`
        : `${file}: not a zip archive (torch.save has written zip archives since PyTorch 1.6)`,
    );

  const tailLength = Math.min(fileSize, 22 + 0xffff + 20);
  const tail = await readAt(fh, file, tailLength, fileSize - tailLength);
  let i = tail.length - 22;
  while (i >= 0 && !(tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) === tail.length)) i--;
  if (i < 0) throw badCheckpoint(`${file}: no end-of-central-directory record (the file is truncated or not a zip)`);
  let count = tail.readUInt16LE(i + 10);
  let dirSize = tail.readUInt32LE(i + 12);
  let dirOffset = tail.readUInt32LE(i + 16);
  let disks = tail.readUInt16LE(i + 4) | tail.readUInt16LE(i + 6);
  let dirLimit = fileSize - tailLength + i;
  if (i >= 20 && tail.readUInt32LE(i - 20) === SIG_LOCATOR64) {
    const at = u64(tail, i - 12, file);
    if (at + 56 > dirLimit - 20)
      throw badCheckpoint(`${file}: zip64 end-of-central-directory offset ${at} is out of range`);
    const r = await readAt(fh, file, 56, at);
    if (r.readUInt32LE(0) !== SIG_EOCD64)
      throw badCheckpoint(`${file}: no zip64 end-of-central-directory record at ${at}`);
    disks = r.readUInt32LE(16) | r.readUInt32LE(20) | Number(tail.readUInt32LE(i - 4) > 1);
    count = u64(r, 32, file);
    dirSize = u64(r, 40, file);
    dirOffset = u64(r, 48, file);
    dirLimit = at;
  }
  if (disks !== 0) throw badCheckpoint(`${file}: a zip archive split over several disks`);
  if (dirSize > MAX_DIRECTORY_BYTES)
    throw badCheckpoint(`${file}: central directory of ${dirSize} bytes is over the ${MAX_DIRECTORY_BYTES}-byte limit`);
  if (dirOffset + dirSize > dirLimit)
    throw badCheckpoint(
      `${file}: central directory [${dirOffset}, ${dirOffset + dirSize}) runs past its end record (truncated?)`,
    );

  const entries = parseDirectory(await readAt(fh, file, dirSize, dirOffset), count, file);
  const first = entries.keys().next().value;
  const slash = first?.indexOf("/") ?? -1;
  if (first === undefined || slash < 0)
    throw badCheckpoint(`${file}: ${first === undefined ? "empty archive" : `entry "${first}" is not in a folder`}`);

  const dataStart = async (e: ZipEntry): Promise<number> => {
    if (e.method !== 0 || e.flags & 1)
      throw badCheckpoint(
        `${file}: entry "${e.name}" is ${e.flags & 1 ? "encrypted" : `compressed (method ${e.method})`}; torch.save ` +
          `stores entries uncompressed, so the archive was repacked: re-save it with torch.save`,
      );
    if (e.compressedSize !== e.size) throw badCheckpoint(`${file}: stored entry "${e.name}" has two different sizes`);
    const h = await readAt(fh, file, 30 + e.rawName.length, e.headerOffset);
    if (h.readUInt32LE(0) !== SIG_LOCAL || !h.subarray(30).equals(e.rawName))
      throw badCheckpoint(`${file}: entry "${e.name}" has no matching local header at ${e.headerOffset}`);
    const start = e.headerOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + e.size > dirOffset)
      throw badCheckpoint(
        `${file}: entry "${e.name}" ([${start}, ${start + e.size})) runs into the central directory (truncated?)`,
      );
    return start;
  };
  const read = async (e: ZipEntry, maxBytes: number): Promise<Buffer> => {
    if (e.size > maxBytes)
      throw badCheckpoint(`${file}: entry "${e.name}" of ${e.size} bytes is over the ${maxBytes}-byte limit`);
    return readAt(fh, file, e.size, await dataStart(e));
  };
  return { prefix: first.slice(0, slash), entries, dataStart, read };
}

function parseDirectory(dir: Buffer, count: number, file: string): Map<string, ZipEntry> {
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > dir.length || dir.readUInt32LE(p) !== SIG_CENTRAL)
      throw badCheckpoint(`${file}: central directory entry ${k} of ${count} is malformed`);
    const nameEnd = p + 46 + dir.readUInt16LE(p + 28);
    const extraEnd = nameEnd + dir.readUInt16LE(p + 30);
    const end = extraEnd + dir.readUInt16LE(p + 32);
    if (end > dir.length) throw badCheckpoint(`${file}: central directory entry ${k} runs past the directory`);
    const rawName = Buffer.from(dir.subarray(p + 46, nameEnd));
    const e: ZipEntry = {
      name: rawName.toString("utf8"),
      rawName,
      flags: dir.readUInt16LE(p + 8),
      method: dir.readUInt16LE(p + 10),
      compressedSize: dir.readUInt32LE(p + 20),
      size: dir.readUInt32LE(p + 24),
      headerOffset: dir.readUInt32LE(p + 42),
    };
    // Zip64 extended information: 64-bit values for exactly the fields saturated above, in this order.
    const wide = (["size", "compressedSize", "headerOffset"] as const).filter((f) => e[f] === U32_MAX);
    for (let x = nameEnd; wide.length > 0 && x + 4 <= extraEnd; x += 4 + dir.readUInt16LE(x + 2)) {
      if (dir.readUInt16LE(x) !== 1) continue;
      if (8 * wide.length > dir.readUInt16LE(x + 2) || x + 4 + 8 * wide.length > extraEnd)
        throw badCheckpoint(`${file}: zip64 field of entry "${e.name}" is too short`);
      wide.forEach((f, j) => (e[f] = u64(dir, x + 4 + 8 * j, file)));
      wide.length = 0;
    }
    if (wide.length) throw badCheckpoint(`${file}: entry "${e.name}" lacks its zip64 field`);
    if (entries.has(e.name)) throw badCheckpoint(`${file}: the archive holds "${e.name}" twice`);
    entries.set(e.name, e);
    p = end;
  }
  return entries;
}

function u64(buf: Buffer, at: number, file: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw badCheckpoint(`${file}: 64-bit field ${v} is out of range`);
  return Number(v);
}

async function readAt(fh: FileHandle, file: string, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw badCheckpoint(`${file}: ended at byte ${position + done} (was it truncated?)`);
    done += bytesRead;
  }
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Restricted unpickler (opcodes as CPython's Lib/pickle.py defines them)

class Tuple {
  constructor(readonly items: Value[]) {}
}
/** An allow-listed global; never resolved to anything executable. */
class Global {
  constructor(readonly path: string) {}
}
class Persistent {
  constructor(readonly pid: Value) {}
}
/** REDUCE of an allow-listed tensor rebuild function, kept as data. */
class Call {
  constructor(
    readonly func: string,
    readonly args: Value[],
  ) {}
}
class Float {
  constructor(readonly value: number) {}
}
type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Float
  | Tuple
  | Global
  | Persistent
  | Call
  | Value[]
  | Map<Value, Value>;

const utf8 = new TextDecoder("utf-8", { fatal: true });

function unpickle(bytes: Buffer, where: string): Value {
  let pos = 0;
  let at = 0;
  const stack: Value[] = [];
  const marks: number[] = [];
  const memo = new Map<number, Value>();
  const fail = (msg: string) => badCheckpoint(`${where}: ${msg} (opcode at byte ${at})`);
  const take = (n: number): number => {
    if (pos + n > bytes.length) throw fail("ends in the middle of an opcode (truncated?)");
    pos += n;
    return pos - n;
  };
  // MARK starts a fresh stack in CPython, so nothing below the last mark can be popped.
  const floor = () => marks[marks.length - 1] ?? 0;
  const pop = (): Value => {
    if (stack.length <= floor()) throw fail("pops an empty stack");
    return stack.pop()!;
  };
  const top = (): Value => {
    if (stack.length <= floor()) throw fail("reads an empty stack");
    return stack[stack.length - 1];
  };
  const popMark = (): Value[] => {
    const m = marks.pop();
    if (m === undefined) throw fail("has no MARK to pop to");
    return stack.splice(m);
  };
  const text = (start: number, end: number): string => {
    try {
      return utf8.decode(bytes.subarray(start, end));
    } catch {
      throw fail("holds a string that is not UTF-8");
    }
  };
  const str = (n: number) => {
    const s = take(n);
    return text(s, s + n);
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw fail("ends inside a GLOBAL (truncated?)");
    const s = take(end + 1 - pos);
    return text(s, end);
  };
  const global = (module: Value, name: Value): Global => {
    const path = `${String(module)}.${String(name)}`;
    if (typeof module !== "string" || typeof name !== "string" || !allowedGlobal(path))
      throw badCheckpoint(
        `${where}: imports ${path}, which is not among the globals of a torch.save state dict; ` +
          `the file is refused for safety (nothing in it was executed)`,
      );
    return new Global(path);
  };
  const get = (i: number) => {
    if (!memo.has(i)) throw fail(`reads memo entry ${i}, which was never stored`);
    return memo.get(i)!;
  };
  const setItem = (d: Value, k: Value, v: Value) => {
    if (!(d instanceof Map)) throw fail(`sets an item on ${describe(d)}`);
    if (typeof k === "object" && k !== null) throw fail(`uses ${describe(k)} as a dict key`);
    if (d.has(k)) throw fail(`sets key ${JSON.stringify(typeof k === "bigint" ? String(k) : k)} twice`);
    d.set(k, v);
  };
  const list = (l: Value): Value[] => {
    if (!Array.isArray(l)) throw fail(`appends to ${describe(l)}`);
    return l;
  };

  for (;;) {
    at = pos;
    const op = bytes[take(1)];
    switch (op) {
      case 0x80: // PROTO
        if (bytes[take(1)] > 5) throw fail(`uses pickle protocol ${bytes[at + 1]}`);
        break;
      case 0x95: // FRAME: only a read-ahead hint
        take(8);
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new Tuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new Tuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const items = Array.from({ length: op - 0x84 }, pop).reverse();
        stack.push(new Tuple(items));
        break;
      }
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(bytes[take(1)]));
        break;
      case 0x58: // BINUNICODE
        stack.push(str(bytes.readUInt32LE(take(4))));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64(bytes, take(8), where)));
        break;
      case 0x4a: // BININT
        stack.push(bytes.readInt32LE(take(4)));
        break;
      case 0x4b: // BININT1
        stack.push(bytes[take(1)]);
        break;
      case 0x4d: // BININT2
        stack.push(bytes.readUInt16LE(take(2)));
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const n = bytes[take(1)];
        const s = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[s + i]);
        if (n > 0 && bytes[s + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(Number.isSafeInteger(Number(v)) ? Number(v) : v);
        break;
      }
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x47: // BINFLOAT
        stack.push(new Float(bytes.readDoubleBE(take(8))));
        break;
      case 0x71: // BINPUT
        memo.set(bytes[take(1)], top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(bytes.readUInt32LE(take(4)), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(get(bytes[take(1)]));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(get(bytes.readUInt32LE(take(4))));
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        if (items.length % 2) throw fail("SETITEMS has a key without a value");
        const d = top();
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i], items[i + 1]);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        list(top()).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = list(top());
        for (const v of items) l.push(v);
        break;
      }
      case 0x63: // GLOBAL
        stack.push(global(line(), line()));
        break;
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        stack.push(global(pop(), name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const func = pop();
        if (!(func instanceof Global) || !CALLABLE.has(func.path))
          throw badCheckpoint(
            `${where}: calls ${describe(func)}, which is not a tensor rebuild; the file is refused for safety`,
          );
        if (!(args instanceof Tuple)) throw fail(`calls ${func.path} with ${describe(args)} instead of a tuple`);
        if (func.path !== ORDERED_DICT) stack.push(new Call(func.path, args.items));
        else if (args.items.length === 0) stack.push(new Map());
        else throw fail(`builds an OrderedDict from arguments`);
        break;
      }
      case 0x62: {
        // BUILD: the only state a state dict carries is OrderedDict._metadata, which is not needed
        const state = pop();
        if (!(top() instanceof Map) || !(state instanceof Map))
          throw fail(`sets state ${describe(state)} on ${describe(top())}`);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(new Persistent(pop()));
        break;
      default:
        throw fail(`has opcode 0x${op.toString(16).padStart(2, "0")}, which torch.save does not write`);
    }
  }
}

function describe(v: Value | undefined): string {
  if (v === null) return "None";
  if (v === undefined) return "nothing";
  if (v instanceof Map) return `a dict {${[...v.keys()].slice(0, 4).map(String).join(", ")}${v.size > 4 ? ", ..." : ""}}`;
  if (Array.isArray(v)) return "a list";
  if (v instanceof Tuple) return `(${v.items.map((x) => (x instanceof Tuple ? "(...)" : describe(x))).join(", ")})`;
  if (v instanceof Global) return v.path;
  if (v instanceof Call) return `${v.func}(...)`;
  if (v instanceof Persistent) return "a persistent id";
  if (v instanceof Float) return String(v.value);
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

const isCount = (v: Value | undefined): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
