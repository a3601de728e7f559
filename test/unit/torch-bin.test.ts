import { mkdtemp, open, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Eagle3Error } from "../../lib/errors.js";
import type { TensorEntry } from "../../lib/model/safetensors.js";
import { readSafetensorsHeader } from "../../lib/model/safetensors.js";
import { readTorchBin } from "../../lib/model/torch-bin.js";
import {
  Float,
  Global,
  Persistent,
  pickle,
  type Py,
  Reduce,
  type StorageSpec,
  stateDict,
  type TensorSpec,
  torchSave,
  type TorchSaveOptions,
  Tuple,
  writeTorchBin,
  zipArchive,
} from "./helpers/torch-bin-writer.js";

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "eagle3-bin-"));
  file = join(dir, "pytorch_model.bin");
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** `n` bytes that differ from storage to storage. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 97 + 7) & 255;
  return b;
}

async function readBack(e: TensorEntry): Promise<Buffer> {
  const fh = await open(e.file, "r");
  try {
    const buf = Buffer.alloc(e.byteLength);
    await fh.read(buf, 0, e.byteLength, e.dataOffset);
    return buf;
  } finally {
    await fh.close();
  }
}

async function rejects(p: Promise<unknown>, code: string, ...fragments: string[]): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Eagle3Error);
  expect((err as Eagle3Error).code).toBe(code);
  for (const f of [file, ...fragments]) expect((err as Error).message).toContain(f);
}

/** One float16 tensor "w" over all of `data`. */
const one = (data: Buffer): [TensorSpec[], StorageSpec[]] => [
  [{ name: "w", storage: 0, shape: [data.length / 2] }],
  [{ dtype: "float16", data }],
];

describe("readTorchBin: valid files", () => {
  it("reads each dtype back at its data offset", async () => {
    const storages: StorageSpec[] = [
      { dtype: "float16", data: bytes(24, 1) },
      { dtype: "bfloat16", data: bytes(8, 2) },
      { dtype: "float32", data: bytes(12, 3) },
      { dtype: "int64", data: bytes(40, 4) },
      { dtype: "bool", data: Buffer.from([1, 0, 1, 1, 0, 1]) },
      { dtype: "int32", data: bytes(4, 6) },
      { dtype: "uint8", data: bytes(3, 7) },
      { dtype: "float16", data: Buffer.alloc(0) },
    ];
    const specs: TensorSpec[] = [
      { name: "fc.weight", storage: 0, shape: [3, 4] },
      { name: "bf", storage: 1, shape: [4] },
      { name: "f", storage: 2, shape: [3] },
      { name: "d2t", storage: 3, shape: [5] },
      { name: "t2d", storage: 4, shape: [6] },
      { name: "scalar", storage: 5, shape: [] },
      { name: "u", storage: 6, shape: [1, 3] },
      { name: "empty", storage: 7, shape: [0, 4] },
    ];
    await writeTorchBin(file, specs, storages);
    const bin = await readTorchBin(file);
    expect(bin.path).toBe(file);
    expect([...bin.tensors.keys()]).toEqual(specs.map((s) => s.name));
    const dtypes = ["f16", "bf16", "f32", "i64", "bool", "i32", "u8", "f16"];
    for (const [i, s] of specs.entries()) {
      const e = bin.tensors.get(s.name)!;
      expect(e).toMatchObject({ name: s.name, dtype: dtypes[i], shape: s.shape, file, byteLength: storages[i].data.length });
      expect(e.dataOffset % 64).toBe(0); // torch aligns storages for mmap
      expect(await readBack(e)).toEqual(storages[i].data);
    }
  });

  it("reads module.state_dict() files (OrderedDict with _metadata) and nn.Parameter values", async () => {
    const storages = [
      { dtype: "float16", data: bytes(12, 1) },
      { dtype: "float16", data: bytes(4, 2) },
    ];
    await writeTorchBin(
      file,
      [
        { name: "0.weight", storage: 0, shape: [2, 3] },
        { name: "0.bias", storage: 1, shape: [2], parameter: true },
      ],
      storages,
      { modules: ["", "0"] },
    );
    const bin = await readTorchBin(file);
    expect([...bin.tensors.keys()]).toEqual(["0.weight", "0.bias"]);
    expect(await readBack(bin.tensors.get("0.weight")!)).toEqual(storages[0].data);
    expect(await readBack(bin.tensors.get("0.bias")!)).toEqual(storages[1].data);
  });

  it("reads views that share one storage at their storage offsets", async () => {
    const data = bytes(48, 5); // 12 float32
    await writeTorchBin(
      file,
      [
        { name: "all", storage: 0, shape: [3, 4] },
        { name: "slice", storage: 0, shape: [4], offset: 2 },
        { name: "row", storage: 0, shape: [1, 4], offset: 8, stride: [123, 1] }, // size-1 dims may have any stride
        { name: "tail", storage: 0, shape: [0], offset: 12 },
      ],
      [{ dtype: "float32", data }],
    );
    const t = (await readTorchBin(file)).tensors;
    const base = t.get("all")!.dataOffset;
    expect(await readBack(t.get("all")!)).toEqual(data);
    expect(t.get("slice")).toMatchObject({ dataOffset: base + 8, byteLength: 16 });
    expect(await readBack(t.get("slice")!)).toEqual(data.subarray(8, 24));
    expect(await readBack(t.get("row")!)).toEqual(data.subarray(32, 48));
    expect(t.get("tail")).toMatchObject({ dataOffset: base + 48, byteLength: 0 });
  });

  it("reads dtypes that torch ≥ 2.1 saves untyped with _rebuild_tensor_v3", async () => {
    const data = bytes(6, 8);
    await writeTorchBin(file, [{ name: "q", storage: 0, shape: [2, 3] }], [{ dtype: "float8_e4m3fn", data }]);
    const e = (await readTorchBin(file)).tensors.get("q")!;
    expect(e).toMatchObject({ dtype: "f8_e4m3", shape: [2, 3], byteLength: 6 });
    expect(await readBack(e)).toEqual(data);
  });

  it("reads zip64 central directory entries", async () => {
    const [specs, storages] = one(bytes(8, 9));
    await writeTorchBin(file, specs, storages, { zip64Directory: true });
    expect(await readBack((await readTorchBin(file)).tensors.get("w")!)).toEqual(storages[0].data);
  });

  it("reads over 1000 tensors (several SETITEMS batches, 4-byte memo indices)", async () => {
    const n = 1001;
    const specs = Array.from({ length: n }, (_, i) => ({ name: `t${i}`, storage: i, shape: [1] }));
    const storages = specs.map((_, i) => ({ dtype: "int32", data: bytes(4, i) }));
    await writeTorchBin(file, specs, storages);
    const t = (await readTorchBin(file)).tensors;
    expect(t.size).toBe(n);
    expect(await readBack(t.get("t1000")!)).toEqual(storages[1000].data);
  });

  it("reads the data.pkl that torch 2.11 writes with pickle_protocol=4", async () => {
    // torch.save({"h": torch.arange(6, dtype=torch.float16).view(2, 3), "k": torch.arange(2)}, f, pickle_protocol=4)
    const pkl = Buffer.from(
      "800495d1000000000000007d94288c0168948c0c746f7263682e5f7574696c73948c125f72656275696c645f74656e736f725f76329493" +
        "9428288c0773746f72616765948c05746f726368948c0b48616c6653746f726167659493948c0130948c03637075944b067494514b004b" +
        "024b0386944b034b018694898c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294749452948c016b946804" +
        "2828680568068c0b4c6f6e6753746f726167659493948c013194680a4b027494514b004b0285944b01859489681029529474945294752e",
      "hex",
    );
    const storages = [
      { dtype: "float16", data: bytes(12, 1) },
      { dtype: "int64", data: bytes(16, 2) },
    ];
    await writeTorchBin(file, [], storages, { pickle: pkl });
    const t = (await readTorchBin(file)).tensors;
    expect(t.get("h")).toMatchObject({ dtype: "f16", shape: [2, 3] });
    expect(t.get("k")).toMatchObject({ dtype: "i64", shape: [2] });
    expect(await readBack(t.get("k")!)).toEqual(storages[1].data);
  });

  const fixtures = fileURLToPath(new URL("../fixtures/", import.meta.url));
  const realBin = join(fixtures, "eagle3-qwen3-tiny-bin/pytorch_model.bin");
  it("reads the draft fixture torch.save wrote, equal to its safetensors twin", async () => {
    file = realBin;
    const bin = (await readTorchBin(realBin)).tensors;
    const st = (await readSafetensorsHeader(join(fixtures, "eagle3-qwen3-tiny/model.safetensors"))).tensors;
    expect([...bin.keys()].sort()).toEqual([...st.keys()].sort());
    for (const [name, e] of bin) {
      const twin = st.get(name)!;
      expect(e.shape).toEqual(twin.shape);
      const [a, b] = [await readBack(e), await readBack(twin)];
      if (e.dtype !== "f16") {
        expect(e.dtype).toBe(twin.dtype);
        expect(a).toEqual(b);
        continue;
      }
      expect(twin.dtype).toBe("bf16"); // the .bin holds the same values as fp16
      let worst = 0; // error over fp16's rounding bound
      for (let i = 0; i < a.length / 2; i++) {
        const [h, f] = [f16(a.readUInt16LE(2 * i)), bf16(b.readUInt16LE(2 * i))];
        worst = Math.max(worst, Math.abs(h - f) - (Math.abs(f) * 2 ** -11 + 2 ** -24));
      }
      expect(worst, name).toBeLessThanOrEqual(0);
    }
  });
});

function f16(bits: number): number {
  const [s, e, m] = [bits >> 15 ? -1 : 1, (bits >> 10) & 31, bits & 1023];
  return s * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}
function bf16(bits: number): number {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(bits << 16 >>> 0);
  return b.readFloatLE(0);
}

describe("readTorchBin: refusals", () => {
  const BAD = "ERR_BAD_CHECKPOINT";
  const UNSUPPORTED = "ERR_UNSUPPORTED_MODEL";
  const [specs, storages] = one(bytes(8, 1));
  const save = (opts: TorchSaveOptions = {}, t = specs, s = storages) => writeTorchBin(file, t, s, opts);
  const withPickle = (root: Py) => save({ pickle: pickle(root) });

  it.each([
    ["os", "system"],
    ["builtins", "eval"],
    ["numpy.core.multiarray", "_reconstruct"],
    ["torch", "load"],
    ["torch._tensor", "_rebuild_from_type_v2"],
  ])("refuses GLOBAL %s.%s without executing anything", async (module, name) => {
    await withPickle(new Map([["w", new Reduce(new Global(module, name), new Tuple(["touch pwned"]))]]));
    await rejects(readTorchBin(file), BAD, `imports ${module}.${name}`, "refused for safety");
  });

  it("refuses STACK_GLOBAL imports the same way", async () => {
    await save({ pickle: Buffer.from("8004" + "8c026f73" + "8c0673797374656d" + "93" + "2e", "hex") });
    await rejects(readTorchBin(file), BAD, "imports os.system", "refused for safety");
  });

  it("refuses to call an allowed global that is not a tensor rebuild", async () => {
    await withPickle(new Map([["w", new Reduce(new Global("torch", "HalfStorage"), new Tuple([3]))]]));
    await rejects(readTorchBin(file), BAD, "calls torch.HalfStorage", "refused for safety");
  });

  it("refuses a compressed storage entry", async () => {
    await save({ deflate: ["data/0"] });
    await rejects(readTorchBin(file), BAD, '"archive/data/0" is compressed (method 8)');
  });

  it("refuses a non-contiguous tensor", async () => {
    const s = [{ dtype: "float32", data: bytes(48, 1) }];
    await save({}, [{ name: "wt", storage: 0, shape: [4, 3], stride: [1, 4] }], s);
    await rejects(readTorchBin(file), BAD, 'tensor "wt"', "size (4,3) with stride (1,4) is not contiguous");
  });

  it("refuses a tensor that reaches past its storage", async () => {
    const s = [{ dtype: "float32", data: bytes(48, 1) }];
    await save({}, [{ name: "w", storage: 0, shape: [2, 4], offset: 5 }], s);
    await rejects(readTorchBin(file), BAD, 'tensor "w"', "elements [5, 13) lie outside its storage data/0 of 12 elements");
  });

  it("refuses a storage whose entry size differs from its persistent id", async () => {
    await save({ pickle: pickle(stateDict(specs, [{ dtype: "float16", data: bytes(10, 1) }])) });
    await rejects(readTorchBin(file), BAD, 'tensor "w"', "storage data/0 holds 8 bytes", "5 elements needs 10");
  });

  it("refuses a missing storage entry", async () => {
    await save({ omit: ["data/0"] });
    await rejects(readTorchBin(file), BAD, 'tensor "w"', "archive/data/0 is missing");
  });

  it("refuses an archive without data.pkl", async () => {
    await save({ omit: ["data.pkl"] });
    await rejects(readTorchBin(file), BAD, "no archive/data.pkl");
  });

  it.each([
    ["the last byte", (n: number) => n - 1],
    ["the end records", (n: number) => n - 60],
    ["half of it", (n: number) => n >> 1],
    ["all but its first local header", () => 40],
  ])("refuses a file truncated by %s", async (_, keep) => {
    await save();
    await truncate(file, keep((await readFile(file)).length));
    await rejects(readTorchBin(file), BAD, "truncated");
  });

  it("refuses a truncated data.pkl", async () => {
    const full = pickle(stateDict(specs, storages));
    await save({ pickle: full.subarray(0, full.length - 9) });
    await rejects(readTorchBin(file), BAD, "data.pkl", "truncated");
  });

  it("refuses files that are not zip archives, naming torch's legacy format", async () => {
    await writeFile(file, "hello, not a checkpoint");
    await rejects(readTorchBin(file), BAD, "not a zip archive");
    await writeFile(file, Buffer.from("80028a0a6cfc9c46f9206aa850192e", "hex"));
    await rejects(readTorchBin(file), BAD, "legacy format", "_use_new_zipfile_serialization=False");
    file = join(dir, "absent.bin");
    await rejects(readTorchBin(file), BAD, "no such file");
  });

  it("refuses a TorchScript archive", async () => {
    const records = ["constants.pkl", "data.pkl"].map((name) => ({ name, data: pickle(null) }));
    await writeFile(file, zipArchive("archive", records));
    await rejects(readTorchBin(file), BAD, "TorchScript");
  });

  it.each([
    ["an opcode torch.save never writes (INST)", "800269", "opcode 0x69"],
    ["a memo read of an entry never stored", "8002680a2e", "memo entry 10"],
    ["a stack underflow", "8002732e", "empty stack"],
    ["a string that is not UTF-8", "80025802000000c3282e", "not UTF-8"],
    ["a pickle protocol from the future", "80062e", "protocol 6"],
  ])("refuses data.pkl with %s", async (_, hex, fragment) => {
    await save({ pickle: Buffer.from(hex, "hex") });
    await rejects(readTorchBin(file), BAD, "data.pkl", fragment);
  });

  it("refuses a key set twice, a non-tensor value and a root that is not a dict", async () => {
    await save({ pickle: Buffer.from("80027d28580100000061" + "4b01" + "580100000061" + "4b02" + "752e", "hex") });
    await rejects(readTorchBin(file), BAD, 'sets key "a" twice');
    await withPickle(new Map([["step", 5]]));
    await rejects(readTorchBin(file), BAD, 'tensor "step": is 5, not a tensor');
    await withPickle(new Map([["lr", new Float(0.5)]]));
    await rejects(readTorchBin(file), BAD, 'tensor "lr": is 0.5, not a tensor');
    await withPickle(["w"]);
    await rejects(readTorchBin(file), BAD, "data.pkl holds a list, not a dict of tensors");
  });

  it("refuses a persistent id that is not a torch storage", async () => {
    const rebuild = new Global("torch._utils", "_rebuild_tensor_v2");
    for (const pid of [
      new Tuple(["storage", new Global("torch", "HalfStorage"), "0", "cpu"]),
      new Tuple(["storage", new Global("torch", "float16"), "0", "cpu", 4]),
      "0",
    ]) {
      const args = new Tuple([new Persistent(pid), 0, new Tuple([4]), new Tuple([1]), false, new Map()]);
      await withPickle(new Map([["w", new Reduce(rebuild, args)]]));
      await rejects(readTorchBin(file), BAD, 'tensor "w": its storage is not a (\'storage\'');
    }
  });

  it("throws nothing but ERR_BAD_CHECKPOINT for hundreds of corrupted files", async () => {
    const good = torchSave([...specs, { name: "p", storage: 0, shape: [2], offset: 2, parameter: true }], storages, {
      modules: [""],
    });
    let seed = 1;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(good);
      // Mostly data.pkl and the directory, where a flipped byte changes meaning.
      const at = i % 3 === 2 ? b.length - 1 - random(220) : 64 + random(400);
      b[at] ^= 1 << random(8);
      await writeFile(file, b);
      const err = await readTorchBin(file).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (err !== undefined) expect((err as Eagle3Error).code, `byte ${at}`).toBe(BAD);
    }
  });

  it("refuses big-endian data", async () => {
    await save({ byteorder: "big" });
    await rejects(readTorchBin(file), UNSUPPORTED, "big-endian");
  });

  it.each([
    ["float64", "torch.float64 (torch.DoubleStorage)"],
    ["uint16", "torch.uint16 (torch._utils._rebuild_tensor_v3)"],
  ])("refuses %s tensors as unsupported, naming the tensor", async (dtype, fragment) => {
    await save({}, [{ name: "x", storage: 0, shape: [2] }], [{ dtype, data: bytes(dtype === "float64" ? 16 : 4, 1) }]);
    await rejects(readTorchBin(file), UNSUPPORTED, 'tensor "x"', fragment, "not supported");
  });

  it("refuses a lazily negated tensor (rebuild metadata)", async () => {
    await save({}, [{ ...specs[0], metadata: new Map([["neg", true]]) }]);
    await rejects(readTorchBin(file), UNSUPPORTED, 'tensor "w"', "metadata a dict {neg}");
  });
});
