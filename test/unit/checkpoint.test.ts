import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { expectRejects } from "../helpers/coded-errors.js";
import { openCheckpoint } from "../../lib/model/checkpoint.js";
import { writeRawSafetensors, writeSafetensors } from "./helpers/safetensors-writer.js";

const INDEX = "model.safetensors.index.json";
const A = "model-00001-of-00002.safetensors";
const B = "model-00002-of-00002.safetensors";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "eagle3-ckpt-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** Asserts a rejection with ERR_BAD_CHECKPOINT whose message contains every fragment. */
const rejectsBad = (p: Promise<unknown>, ...fragments: string[]) => expectRejects(p, "ERR_BAD_CHECKPOINT", ...fragments);

const writeIndex = (weightMap: unknown) =>
  writeFile(join(dir, INDEX), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));

/** Two shards: a and b in A, c in B, listed accordingly. */
async function writeSharded(): Promise<void> {
  await writeSafetensors(join(dir, A), [
    { name: "a", shape: [4, 2] },
    { name: "b", shape: [3], dtype: "F32" },
  ]);
  await writeSafetensors(join(dir, B), [{ name: "c", shape: [5] }]);
  await writeIndex({ a: A, b: A, c: B });
}

describe("openCheckpoint", () => {
  it("opens a single model.safetensors", async () => {
    await writeSafetensors(join(dir, "model.safetensors"), [
      { name: "x", shape: [2, 3] },
      { name: "y", shape: [4], dtype: "F32" },
    ]);
    const ck = await openCheckpoint(dir);
    expect(ck).toMatchObject({ dir, format: "safetensors", sharded: false, totalBytes: 12 + 16 });
    expect(ck.files.map((f) => f.path)).toEqual([join(dir, "model.safetensors")]);
    expect(ck.tensors.get("y")).toMatchObject({ file: join(dir, "model.safetensors"), shape: [4] });
  });

  it("opens a sharded checkpoint through its index", async () => {
    await writeSharded();
    const ck = await openCheckpoint(dir);
    expect(ck).toMatchObject({ sharded: true, totalBytes: 16 + 12 + 10 });
    expect(ck.files.map((f) => f.path)).toEqual([join(dir, A), join(dir, B)]);
    expect(ck.tensors.get("b")!.file).toBe(join(dir, A));
    expect(ck.tensors.get("c")!.file).toBe(join(dir, B));
  });

  it("accepts shards in a subdirectory and keeps a shard's unlisted tensors, as transformers does", async () => {
    await mkdir(join(dir, "w"));
    await writeSafetensors(join(dir, "w", A), [
      { name: "a", shape: [1] },
      { name: "extra", shape: [1] },
    ]);
    await writeIndex({ a: `w/${A}` });
    const ck = await openCheckpoint(dir);
    expect([...ck.tensors.keys()].sort()).toEqual(["a", "extra"]);
  });

  it("prefers model.safetensors when an index is also present", async () => {
    await writeSafetensors(join(dir, "model.safetensors"), [{ name: "x", shape: [1] }]);
    await writeIndex({ a: A });
    expect((await openCheckpoint(dir)).sharded).toBe(false);
  });

  it.each(["qwen2-tiny", "qwen3-tiny"])("opens the transformers-written fixture %s", async (name) => {
    const fixture = fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
    const ck = await openCheckpoint(fixture);
    expect(ck.tensors.get("model.norm.weight")?.dtype).toBe("bf16");
    if (ck.sharded) {
      const index = JSON.parse(await readFile(join(fixture, INDEX), "utf8")) as { weight_map: Record<string, string> };
      expect(ck.tensors.size).toBe(Object.keys(index.weight_map).length);
      expect(ck.files).toHaveLength(3);
    }
  });
});

describe("openCheckpoint: broken checkpoints", () => {
  it("names a missing directory", async () => {
    await rejectsBad(openCheckpoint(join(dir, "gone")), join(dir, "gone"), "no such directory");
  });

  it("lists what it looked for when there are no weights", async () => {
    await rejectsBad(openCheckpoint(dir), dir, "model.safetensors", INDEX);
  });

  it("says that pytorch_model.bin is not read here", async () => {
    await writeFile(join(dir, "pytorch_model.bin"), "x");
    await rejectsBad(openCheckpoint(dir), "pytorch_model.bin is present but not read here");
  });

  it("reports a broken single file by its path", async () => {
    await writeFile(join(dir, "model.safetensors"), "abc");
    await rejectsBad(openCheckpoint(dir), join(dir, "model.safetensors"), "too short");
  });

  it("refuses an index that is not JSON", async () => {
    await writeFile(join(dir, INDEX), '{"weight_map": {');
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), "not valid JSON");
  });

  it("refuses an index that is not an object", async () => {
    await writeFile(join(dir, INDEX), "[]");
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), "not a JSON object");
  });

  it.each([undefined, [], "x"])("refuses weight_map %j", async (weightMap) => {
    await writeIndex(weightMap);
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), "weight_map is missing or not an object");
  });

  it("refuses an empty weight_map", async () => {
    await writeIndex({});
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), "weight_map is empty");
  });

  it("refuses a weight_map entry that is not a file name", async () => {
    await writeIndex({ a: 3 });
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), 'tensor "a"', "not a file name");
  });

  it("refuses an index naming a tensor twice, escapes included", async () => {
    await writeSharded();
    const text = `{"metadata":{"a.w":1},"weight_map":{"a.w":"${A}","b":"${A}","a\\u002ew":"${B}"}}`;
    await writeFile(join(dir, INDEX), text);
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), 'weight_map names tensor "a.w" twice');
  });

  it("names shards that are missing on disk", async () => {
    await writeSafetensors(join(dir, A), [{ name: "a", shape: [1] }]);
    await writeIndex({ a: A, c: B, d: "model-extra.safetensors" });
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), join(dir, B), join(dir, "model-extra.safetensors"));
  });

  it.each(["../outside.safetensors", "/etc/passwd", "w/../../outside.safetensors", "."])(
    "refuses shard path %s outside the directory",
    async (shard) => {
      await writeIndex({ a: shard });
      await rejectsBad(openCheckpoint(dir), join(dir, INDEX), `shard "${shard}"`, 'tensor "a"', "lies outside");
    },
  );

  it("refuses a tensor listed in a shard that does not contain it", async () => {
    await writeSharded();
    await writeIndex({ a: A, b: A, c: A });
    await rejectsBad(openCheckpoint(dir), join(dir, INDEX), 'tensor "c"', join(dir, A), "does not contain it");
  });

  it("refuses a tensor present in two shards", async () => {
    await writeSafetensors(join(dir, A), [{ name: "a", shape: [1] }]);
    await writeSafetensors(join(dir, B), [
      { name: "b", shape: [1] },
      { name: "a", shape: [1] },
    ]);
    await writeIndex({ a: A, b: B });
    await rejectsBad(openCheckpoint(dir), 'tensor "a"', "two shards", join(dir, A), join(dir, B));
  });

  it("reports a broken shard by its path", async () => {
    await writeSharded();
    await writeRawSafetensors(join(dir, B), { c: { dtype: "X9", shape: [1], data_offsets: [0, 1] } }, 1);
    await rejectsBad(openCheckpoint(dir), join(dir, B), 'tensor "c"', "unknown dtype");
  });
});
