import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { expectRejects } from "../helpers/coded-errors.js";
import { findDuplicateKey, MAX_HEADER_BYTES, readSafetensorsHeader } from "../../lib/model/safetensors.js";
import { writeRawSafetensors, writeSafetensors } from "./helpers/safetensors-writer.js";

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "eagle3-st-"));
  file = join(dir, "model.safetensors");
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** Asserts a rejection with ERR_BAD_CHECKPOINT whose message contains every fragment. */
const rejectsBad = (p: Promise<unknown>, ...fragments: string[]) => expectRejects(p, "ERR_BAD_CHECKPOINT", ...fragments);

describe("readSafetensorsHeader: valid files", () => {
  it("reads dtypes, shapes, absolute offsets and metadata", async () => {
    await writeSafetensors(
      file,
      [
        { name: "a", shape: [3, 4] },
        { name: "b", shape: [5], dtype: "F32" },
        { name: "scalar", shape: [], dtype: "I64" },
        { name: "empty", shape: [0, 7], dtype: "F16" },
        { name: "q", shape: [2, 2], dtype: "F8_E4M3" },
      ],
      { metadata: { format: "pt" }, trailing: 13 },
    );
    const st = await readSafetensorsHeader(file);
    expect(st.path).toBe(file);
    expect(st.metadata).toEqual({ format: "pt" });
    expect([...st.tensors.keys()]).toEqual(["a", "b", "scalar", "empty", "q"]);
    const start = 8 + st.headerLength;
    expect(st.tensors.get("a")).toEqual({ name: "a", dtype: "bf16", shape: [3, 4], file, dataOffset: start, byteLength: 24 });
    expect(st.tensors.get("b")).toMatchObject({ dtype: "f32", dataOffset: start + 24, byteLength: 20 });
    expect(st.tensors.get("scalar")).toMatchObject({ dtype: "i64", shape: [], byteLength: 8 });
    expect(st.tensors.get("empty")).toMatchObject({ dtype: "f16", byteLength: 0 });
    expect(st.tensors.get("q")).toMatchObject({ dtype: "f8_e4m3", byteLength: 4 });
    expect(st.fileSize).toBe(start + 24 + 20 + 8 + 4 + 13);

    // dataOffset is a file offset: the writer's data bytes count up from the data region's start.
    const fh = await open(file, "r");
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, st.tensors.get("b")!.dataOffset);
    await fh.close();
    expect([...buf]).toEqual([24, 25, 26, 27]);
  });

  it("allows gaps between tensors and a header without __metadata__", async () => {
    await writeRawSafetensors(file, { x: { dtype: "U8", shape: [2], data_offsets: [4, 6] } }, 8);
    const st = await readSafetensorsHeader(file);
    expect(st.metadata).toEqual({});
    expect(st.tensors.get("x")).toMatchObject({ dtype: "u8", dataOffset: 8 + st.headerLength + 4 });
  });

  it("reads a file written by transformers (space-padded header)", async () => {
    const real = fileURLToPath(new URL("../fixtures/qwen3-tiny/model.safetensors", import.meta.url));
    const st = await readSafetensorsHeader(real);
    expect(st.metadata).toEqual({ format: "pt" });
    expect(st.tensors.get("model.embed_tokens.weight")).toMatchObject({ dtype: "bf16", shape: [512, 64] });
    expect(st.tensors.get("model.layers.0.self_attn.q_norm.weight")).toMatchObject({ shape: [24] });
  });
});

describe("readSafetensorsHeader: broken files", () => {
  it("names a missing file", async () => {
    await rejectsBad(readSafetensorsHeader(join(dir, "nope.safetensors")), join(dir, "nope.safetensors"), "no such file");
  });

  it("refuses a directory", async () => {
    await rejectsBad(readSafetensorsHeader(dir), dir, "not a regular file");
  });

  it("refuses a file shorter than 8 bytes", async () => {
    await writeFile(file, Buffer.from([1, 2, 3]));
    await rejectsBad(readSafetensorsHeader(file), file, "3 bytes");
  });

  it("refuses a header length past the end of the file", async () => {
    await writeRawSafetensors(file, "{}", 0, { headerLength: 1000n });
    await rejectsBad(readSafetensorsHeader(file), file, "header length 1000", "past the end");
  });

  it("refuses a huge header before reading it", async () => {
    await writeRawSafetensors(file, "{}", 0, { headerLength: BigInt(MAX_HEADER_BYTES) + 1n });
    await rejectsBad(readSafetensorsHeader(file), file, "huge header");
    await writeRawSafetensors(file, "{}", 0, { headerLength: 2n ** 64n - 1n });
    await rejectsBad(readSafetensorsHeader(file), file, "huge header");
  });

  it("refuses a header that is not UTF-8", async () => {
    await writeRawSafetensors(file, Buffer.from([0x7b, 0xff, 0x7d]), 0);
    await rejectsBad(readSafetensorsHeader(file), file, "UTF-8");
  });

  it("refuses a header that is not JSON", async () => {
    await writeRawSafetensors(file, '{"a": ', 0);
    await rejectsBad(readSafetensorsHeader(file), file, "not valid JSON");
  });

  it.each(["[]", "null", "3", '"x"'])("refuses a header that is not an object: %s", async (text) => {
    await writeRawSafetensors(file, text, 0);
    await rejectsBad(readSafetensorsHeader(file), file, "not a JSON object");
  });

  it.each([{ format: 1 }, "pt", ["pt"]])("refuses __metadata__ %j", async (metadata) => {
    await writeRawSafetensors(file, { __metadata__: metadata }, 0);
    await rejectsBad(readSafetensorsHeader(file), file, "__metadata__");
  });

  it("refuses a tensor entry that is not an object", async () => {
    await writeRawSafetensors(file, { w: [1, 2] }, 0);
    await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w"', "not an object");
  });

  it.each([["F64"], ["bf16"], [3], [undefined]])("refuses dtype %j", async (dtype) => {
    await writeRawSafetensors(file, { w: { dtype, shape: [1], data_offsets: [0, 2] } }, 2);
    await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w"', "unknown dtype");
  });

  it.each([[[-1]], [[1.5]], [["2"]], [[2 ** 53]], ["2"], [null]])("refuses shape %j", async (shape) => {
    await writeRawSafetensors(file, { w: { dtype: "U8", shape, data_offsets: [0, 2] } }, 2);
    await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w"', "shape");
  });

  it.each([[[0]], [[0, 2, 4]], [[4, 2]], [[-2, 0]], [[0, 1.5]], ["0,2"], [undefined]])(
    "refuses data_offsets %j",
    async (offsets) => {
      await writeRawSafetensors(file, { w: { dtype: "U8", shape: [2], data_offsets: offsets } }, 8);
      await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w"', "data_offsets");
    },
  );

  it("refuses data_offsets that disagree with dtype and shape", async () => {
    await writeRawSafetensors(file, { w: { dtype: "BF16", shape: [2, 3], data_offsets: [0, 6] } }, 12);
    await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w"', "hold 6 bytes", "needs 12");
  });

  it("refuses a range outside the data region", async () => {
    await writeRawSafetensors(file, { w: { dtype: "F32", shape: [4], data_offsets: [4, 20] } }, 19);
    await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w"', "past the data region (19 bytes)");
  });

  it("refuses overlapping tensors, in any header order", async () => {
    const header = {
      c: { dtype: "U8", shape: [4], data_offsets: [20, 24] },
      a: { dtype: "U8", shape: [10], data_offsets: [0, 10] },
      z: { dtype: "U8", shape: [0], data_offsets: [5, 5] }, // empty: overlaps nothing
      b: { dtype: "U8", shape: [2], data_offsets: [8, 10] },
    };
    await writeRawSafetensors(file, header, 24);
    await rejectsBad(readSafetensorsHeader(file), file, '"a"', '"b"', "overlap");
  });

  it("refuses a tensor named twice (JSON.parse would keep only the last)", async () => {
    const entry = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}';
    await writeRawSafetensors(file, `{"w":${entry},"w":${entry}}`, 1);
    await rejectsBad(readSafetensorsHeader(file), file, 'tensor "w" twice');
  });
});

describe("findDuplicateKey", () => {
  it("finds nothing in objects whose keys are unique per object", () => {
    expect(findDuplicateKey('{"a":{"x":1,"y":"x"},"b":{"x":[{"x":2},{"x":3}],"s":"\\"x\\",{"}}')).toBeUndefined();
  });

  it("names the duplicate and the keys leading to its object", () => {
    expect(findDuplicateKey('{"a":1,"m":{"k":1,"j":[1,{}],"k":2}}')).toEqual({ path: ["m"], key: "k" });
  });

  it("compares keys after unescaping", () => {
    expect(findDuplicateKey('{"a.b":1, "a\\u002eb":2}')).toEqual({ path: [], key: "a.b" });
    expect(findDuplicateKey('{"q\\"":1,"q\\u0022":2}')).toEqual({ path: [], key: 'q"' });
    expect(findDuplicateKey('{"\\\\":1,"\\\\\\\\":2}')).toBeUndefined();
  });
});
