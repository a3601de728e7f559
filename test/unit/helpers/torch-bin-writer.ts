/**
 * Writes pytorch_model.bin files byte for byte as torch.save does (checked against files from
 * torch 2.11): CPython's protocol-2 Pickler over what Tensor.__reduce_ex__ returns (torch/_tensor.py),
 * persistent ids from torch/serialization.py `_save`, and miniz's zip layout as
 * caffe2/serialize/inline_container.cc drives it (64-byte aligned data, "FB" padding field, data
 * descriptors, zip64 end records). Pieces are exported so tests can build broken files.
 */
import { writeFile } from "node:fs/promises";
import { deflateRawSync } from "node:zlib";

// ---------------------------------------------------------------------------------------------
// Pickle values and a protocol-2 pickler (CPython Lib/pickle.py, `save` and friends)

export class Tuple {
  constructor(readonly items: Py[]) {}
}
export class Global {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}
/** What __reduce_ex__ returns: func(*args), then dict items set on it, then BUILD with state. */
export class Reduce {
  constructor(
    readonly func: Global,
    readonly args: Tuple,
    readonly dictItems: Array<[Py, Py]> = [],
    readonly state?: Py,
  ) {}
}
export class Persistent {
  constructor(readonly pid: Py) {}
}
export class Float {
  constructor(readonly value: number) {}
}
/** A str object distinct from equal strings: memoized by identity, not by value. */
export class Str {
  constructor(readonly value: string) {}
}
export type Py =
  | null
  | boolean
  | number
  | bigint
  | string
  | Str
  | Float
  | Tuple
  | Global
  | Reduce
  | Persistent
  | Py[]
  | Map<Py, Py>;

const BATCHSIZE = 1000;
const u32le = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24];

export function pickle(obj: Py): Buffer {
  const out: number[] = [0x80, 2];
  // CPython memoizes by id(); plain strings and classes stand for shared objects, so by value here.
  const memo = new Map<unknown, number>();
  const bytes = (b: Uint8Array | number[]): void => {
    for (const x of b) out.push(x);
  };
  const put = (op: number, longOp: number, i: number) => (i < 256 ? bytes([op, i]) : bytes([longOp, ...u32le(i)]));
  const memoKey = (v: Py) =>
    typeof v === "string" ? `s:${v}` : v instanceof Global ? `g:${v.module}.${v.name}` : v;
  const memoize = (v: Py) => {
    memo.set(memoKey(v), memo.size);
    put(0x71, 0x72, memo.size - 1); // BINPUT, LONG_BINPUT
  };
  const setItems = (items: Array<[Py, Py]>) => {
    for (let i = 0; i < items.length; i += BATCHSIZE) {
      const batch = items.slice(i, i + BATCHSIZE);
      if (batch.length > 1) bytes([0x28]);
      for (const [k, v] of batch) {
        save(k);
        save(v);
      }
      bytes([batch.length > 1 ? 0x75 : 0x73]);
    }
  };
  const save = (v: Py): void => {
    if (v instanceof Persistent) {
      save(v.pid);
      return bytes([0x51]);
    }
    const seen = memo.get(memoKey(v));
    if (seen !== undefined) return put(0x68, 0x6a, seen); // BINGET, LONG_BINGET
    if (v === null) return bytes([0x4e]);
    if (typeof v === "boolean") return bytes([v ? 0x88 : 0x89]);
    if (typeof v === "number" || typeof v === "bigint") return saveInt(BigInt(v));
    if (v instanceof Float) {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(v.value);
      return bytes([0x47, ...b]);
    }
    if (typeof v === "string" || v instanceof Str) {
      const b = Buffer.from(typeof v === "string" ? v : v.value, "utf8");
      bytes([0x58, ...u32le(b.length), ...b]);
      return memoize(v);
    }
    if (v instanceof Global) {
      bytes([0x63, ...Buffer.from(`${v.module}\n${v.name}\n`)]);
      return memoize(v);
    }
    if (v instanceof Tuple) {
      const n = v.items.length;
      if (n === 0) return bytes([0x29]);
      if (n > 3) bytes([0x28]);
      v.items.forEach(save);
      bytes([n > 3 ? 0x74 : 0x84 + n]);
      return memoize(v);
    }
    if (Array.isArray(v)) {
      bytes([0x5d]);
      memoize(v);
      for (let i = 0; i < v.length; i += BATCHSIZE) {
        const batch = v.slice(i, i + BATCHSIZE);
        if (batch.length > 1) bytes([0x28]);
        batch.forEach(save);
        bytes([batch.length > 1 ? 0x65 : 0x61]);
      }
      return;
    }
    if (v instanceof Map) {
      bytes([0x7d]);
      memoize(v);
      return setItems([...v]);
    }
    save(v.func);
    save(v.args);
    bytes([0x52]);
    memoize(v);
    setItems(v.dictItems);
    if (v.state !== undefined) {
      save(v.state);
      bytes([0x62]);
    }
  };
  const saveInt = (n: bigint) => {
    if (n >= 0n && n <= 0xffn) return bytes([0x4b, Number(n)]);
    if (n >= 0n && n <= 0xffffn) return bytes([0x4d, Number(n & 255n), Number(n >> 8n)]);
    if (n >= -0x80000000n && n <= 0x7fffffffn) return bytes([0x4a, ...u32le(Number(BigInt.asUintN(32, n)))]);
    // encode_long: little-endian two's complement in the fewest bytes
    const le: number[] = [];
    for (let x = n; ; ) {
      const b = Number(BigInt.asUintN(8, x));
      le.push(b);
      x >>= 8n;
      if ((x === 0n && !(b & 0x80)) || (x === -1n && b & 0x80)) break;
    }
    bytes([0x8a, le.length, ...le]);
  };
  save(obj);
  out.push(0x2e);
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------
// State dicts as torch pickles them

/**
 * Storage class and element size per dtype (torch/storage.py _dtype_to_storage_type_map); other
 * dtypes are saved untyped with _rebuild_tensor_v3. Kept apart from lib/model so that the tests do
 * not grade the reader with its own table.
 */
const STORAGE_CLASS: Record<string, [string, number]> = {
  float16: ["HalfStorage", 2],
  bfloat16: ["BFloat16Storage", 2],
  float32: ["FloatStorage", 4],
  float64: ["DoubleStorage", 8],
  int64: ["LongStorage", 8],
  int32: ["IntStorage", 4],
  int16: ["ShortStorage", 2],
  int8: ["CharStorage", 1],
  uint8: ["ByteStorage", 1],
  bool: ["BoolStorage", 1],
};

export interface StorageSpec {
  /** torch dtype name: "float16", "bfloat16", "float8_e4m3fn", ... */
  dtype: string;
  data: Uint8Array;
}

export interface TensorSpec {
  name: string;
  /** Index into the storages; a storage's key is its index, as torch numbers them in first use. */
  storage: number;
  shape: number[];
  /** In elements; 0 when left out. */
  offset?: number;
  /** Row-major when left out. */
  stride?: number[];
  /** Saved as an nn.Parameter (requires_grad=True). */
  parameter?: boolean;
  /** The optional last argument of the rebuild (torch: {"neg": True} for a lazily negated view). */
  metadata?: Map<Py, Py>;
}

const ordered = () => new Reduce(new Global("collections", "OrderedDict"), new Tuple([]));

function rowMajor(shape: number[]): number[] {
  const stride = shape.map(() => 1);
  for (let i = shape.length - 2; i >= 0; i--) stride[i] = stride[i + 1] * shape[i + 1];
  return stride;
}

/** The rebuild call torch pickles for one tensor (Tensor._reduce_ex_internal). */
function tensorValue(t: TensorSpec, storages: StorageSpec[]): Reduce {
  const { dtype, data } = storages[t.storage];
  const [cls, elementBytes] = STORAGE_CLASS[dtype] ?? [];
  const pid = new Tuple([
    "storage",
    cls ? new Global("torch", cls) : new Global("torch.storage", "UntypedStorage"),
    String(t.storage),
    "cpu",
    cls ? data.length / elementBytes : data.length,
  ]);
  const stride = new Tuple(t.stride ?? rowMajor(t.shape));
  const args: Py[] = [new Persistent(pid), t.offset ?? 0, new Tuple(t.shape), stride, false, ordered()];
  if (!cls) args.push(new Global("torch", dtype));
  if (t.metadata) args.push(t.metadata);
  const rebuild = new Global("torch._utils", cls ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
  const tensor = new Reduce(rebuild, new Tuple(args));
  return t.parameter
    ? new Reduce(new Global("torch._utils", "_rebuild_parameter"), new Tuple([tensor, true, ordered()]))
    : tensor;
}

/**
 * torch.save({...}) pickles a dict; torch.save(module.state_dict()) an OrderedDict whose _metadata
 * attribute holds {"version": 1} per module prefix in `modules`.
 */
export function stateDict(tensors: TensorSpec[], storages: StorageSpec[], modules?: string[]): Py {
  const items: Array<[Py, Py]> = tensors.map((t) => [t.name, tensorValue(t, storages)]);
  if (!modules) return new Map(items);
  // Module prefixes are fresh str objects (prefix[:-1]), so one equal to a storage key is not shared with it.
  const versions = modules.map((m): [Py, Py] => [new Str(m), new Map([["version", 1]])]);
  const metadata = new Reduce(ordered().func, new Tuple([]), versions);
  return new Reduce(ordered().func, new Tuple([]), items, new Map([["_metadata", metadata]]));
}

// ---------------------------------------------------------------------------------------------
// ZIP as miniz writes it for torch

export interface ZipRecord {
  name: string;
  data: Uint8Array;
  /** Deflated (method 8), as torch only does for TorchScript's compressed records. */
  deflate?: boolean;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The archive of `records` under `archive/`. `zip64Directory` writes every central directory entry
 * in zip64 form (sizes and offset in the extra field), which miniz does only past 4 GiB.
 */
export function zipArchive(archive: string, records: ZipRecord[], opts: { zip64Directory?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let cursor = 0;
  const emit = (b: Buffer) => {
    parts.push(b);
    cursor += b.length;
  };
  for (const r of records) {
    const name = Buffer.from(`${archive}/${r.name}`);
    const data = r.deflate ? deflateRawSync(r.data) : Buffer.from(r.data);
    const flags = r.data.length > 0 ? 0x0808 : 0x0800; // UTF-8 names; sizes in a data descriptor
    const method = r.deflate ? 8 : 0;
    const crc = crc32(r.data);
    const offset = cursor;
    const pad = (64 - ((offset + 30 + name.length + 4) % 64)) % 64;
    const local = Buffer.alloc(30 + name.length + 4 + pad, "Z");
    local.writeUInt32LE(0x04034b50, 0);
    local.fill(0, 4, 30);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(4 + pad, 28);
    name.copy(local, 30);
    local.write("FB", 30 + name.length, "latin1");
    local.writeUInt16LE(pad, 32 + name.length);
    emit(local);
    emit(data);
    if (r.data.length > 0) {
      const dd = Buffer.alloc(16);
      dd.writeUInt32LE(0x08074b50, 0);
      dd.writeUInt32LE(crc, 4);
      dd.writeUInt32LE(data.length, 8);
      dd.writeUInt32LE(r.data.length, 12);
      emit(dd);
    }
    const wide = opts.zip64Directory === true;
    const c = Buffer.alloc(46 + name.length + (wide ? 28 : 0));
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(flags, 8);
    c.writeUInt16LE(method, 10);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(wide ? 0xffffffff : data.length, 20);
    c.writeUInt32LE(wide ? 0xffffffff : r.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(wide ? 28 : 0, 30);
    c.writeUInt32LE(wide ? 0xffffffff : offset, 42);
    name.copy(c, 46);
    if (wide) {
      const x = 46 + name.length;
      c.writeUInt16LE(1, x);
      c.writeUInt16LE(24, x + 2);
      c.writeBigUInt64LE(BigInt(r.data.length), x + 4);
      c.writeBigUInt64LE(BigInt(data.length), x + 12);
      c.writeBigUInt64LE(BigInt(offset), x + 20);
    }
    central.push(c);
  }
  const dirOffset = cursor;
  const dir = Buffer.concat(central);
  emit(dir);
  const n = records.length;
  const end = Buffer.alloc(56 + 20 + 22);
  end.writeUInt32LE(0x06064b50, 0); // zip64 end of central directory record
  end.writeBigUInt64LE(44n, 4);
  end.writeUInt16LE(0x031e, 12);
  end.writeUInt16LE(0x002d, 14);
  end.writeBigUInt64LE(BigInt(n), 24);
  end.writeBigUInt64LE(BigInt(n), 32);
  end.writeBigUInt64LE(BigInt(dir.length), 40);
  end.writeBigUInt64LE(BigInt(dirOffset), 48);
  end.writeUInt32LE(0x07064b50, 56); // zip64 locator
  end.writeBigUInt64LE(BigInt(cursor), 64);
  end.writeUInt32LE(1, 72);
  end.writeUInt32LE(0x06054b50, 76); // end of central directory
  end.writeUInt16LE(Math.min(n, 0xffff), 84);
  end.writeUInt16LE(Math.min(n, 0xffff), 86);
  end.writeUInt32LE(dir.length, 88);
  end.writeUInt32LE(Math.min(dirOffset, 0xffffffff), 92);
  emit(end);
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Whole files

export interface TorchSaveOptions {
  /** Folder of every entry; torch uses the file's base name without extension ("archive" for buffers). */
  archive?: string;
  /** Save as module.state_dict() with these module prefixes in _metadata (see stateDict). */
  modules?: string[];
  /** data.pkl to write instead of the state dict's pickle. */
  pickle?: Buffer;
  byteorder?: string;
  /** Record names (relative to the folder) to leave out or to deflate. */
  omit?: string[];
  deflate?: string[];
  zip64Directory?: boolean;
  serializationId?: string;
}

/** The bytes of torch.save(state dict of `tensors`) in torch 2.x record order. */
export function torchSave(tensors: TensorSpec[], storages: StorageSpec[], opts: TorchSaveOptions = {}): Buffer {
  const text = (s: string) => Buffer.from(s, "latin1");
  const records: ZipRecord[] = [
    { name: "data.pkl", data: opts.pickle ?? pickle(stateDict(tensors, storages, opts.modules)) },
    { name: ".format_version", data: text("1") },
    { name: ".storage_alignment", data: text("64") },
    { name: "byteorder", data: text(opts.byteorder ?? "little") },
    ...storages.map((s, i) => ({ name: `data/${i}`, data: s.data })),
    { name: "version", data: text("3\n") },
    { name: ".data/serialization_id", data: text(opts.serializationId ?? "1".repeat(40)) },
  ];
  const kept = records
    .filter((r) => !opts.omit?.includes(r.name))
    .map((r) => ({ ...r, deflate: opts.deflate?.includes(r.name) }));
  return zipArchive(opts.archive ?? "archive", kept, { zip64Directory: opts.zip64Directory });
}

export async function writeTorchBin(
  path: string,
  tensors: TensorSpec[],
  storages: StorageSpec[],
  opts: TorchSaveOptions = {},
): Promise<void> {
  await writeFile(path, torchSave(tensors, storages, opts));
}
