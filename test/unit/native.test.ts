/** The addon's tensors and loader through N-API: round trips, dtypes, disposal, coded errors. */
import { mkdtemp, writeFile, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { native } from "../../lib/native.js";
import { hasCuda } from "../helpers/tensors.js";

describe("native tensors", () => {
  const T = () => native().NativeTensor;

  it.each([
    ["bf16", Uint16Array.from([1, 2, 0x3f80, 65535])],
    ["f16", Uint16Array.from([1, 2, 3, 4])],
    ["f32", Float32Array.from([1.5, -2, 3e30, 0])],
    ["i32", Int32Array.from([-1, 2, 3, 2 ** 31 - 1])],
    ["i64", BigInt64Array.from([-1n, 2n, 3n, 2n ** 62n])],
    ["u8", Uint8Array.from([0, 1, 254, 255])],
    ["bool", Uint8Array.from([0, 1, 1, 0])],
  ] as const)("%s round-trips through a CPU tensor", (dtype, data) => {
    const t = T().fromBytes(data, dtype, [2, 2], "cpu");
    expect(t.dtype).toBe(dtype);
    expect(t.shape).toEqual([2, 2]);
    expect(t.nbytes).toBe(data.byteLength);
    expect(Buffer.from(t.toBytes())).toEqual(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.toBytes()).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/disposed/) }));
  });

  it("refuses sizes that do not match, unknown dtypes and devices, with ERR_INVALID_ARGUMENT", () => {
    expect(() => T().fromBytes(new Uint8Array(3), "f32", [1], "cpu")).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
    expect(() => T().empty("f64" as never, [1], "cpu")).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/f64/) }));
    expect(() => T().empty("f32", [1], "tpu" as never)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
    expect(() => T().empty("f32", [-1], "cpu")).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }));
  });

  it.skipIf(hasCuda)("asks for a CUDA tensor without a GPU: ERR_NO_CUDA_DEVICE, process healthy", () => {
    expect(() => T().empty("bf16", [4], "cuda")).toThrow(expect.objectContaining({ code: "ERR_NO_CUDA_DEVICE" }));
    expect(T().empty("bf16", [4], "cpu").nbytes).toBe(8);
  });

  it("loadTensors converts f16/f32 to bf16, reports progress and names a truncated tensor", async () => {
    const dir = await mkdtemp(join(tmpdir(), "e3-native-"));
    const file = join(dir, "w.bin");
    const f32 = Float32Array.from([1, -2.5, 3.25, 1e-3]);
    const f16 = Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x0001]);  // 1, -2, 0.5, smallest subnormal
    await writeFile(file, Buffer.concat([Buffer.from(f32.buffer), Buffer.from(f16.buffer)]));
    const dst = T().empty("bf16", [8], "cpu");
    const progress: number[] = [];
    await native().loadTensors(file, [
      { name: "a", tensor: dst, dstOffset: 0, fileOffset: 0, byteLength: 16, srcDtype: "f32" },
      { name: "b", tensor: dst, dstOffset: 8, fileOffset: 16, byteLength: 8, srcDtype: "f16" },
    ], (n) => progress.push(n));
    const bf = new Uint16Array(dst.toBytes().buffer);
    const asFloat = (b: number) => new Float32Array(Uint32Array.from([b << 16]).buffer)[0];
    expect(Array.from(bf, asFloat).slice(0, 7)).toEqual([1, -2.5, 3.25, asFloat(bf[3]), 1, -2, 0.5]);
    expect(Math.abs(asFloat(bf[3]) - 1e-3)).toBeLessThan(1e-5);
    expect(progress.at(-1)).toBe(24);
    await truncate(file, 20);
    await expect(native().loadTensors(file, [{ name: "b", tensor: dst, dstOffset: 8, fileOffset: 16, byteLength: 8, srcDtype: "f16" }]))
      .rejects.toMatchObject({ code: "ERR_BAD_CHECKPOINT", message: expect.stringMatching(/tensor b is cut short/) });
    await expect(native().loadTensors(join(dir, "missing.bin"), []))
      .rejects.toMatchObject({ code: "ERR_BAD_CHECKPOINT", message: expect.stringMatching(/missing\.bin/) });
  });
});

describe("CPU ops", () => {
  const ops = () => new (native().NativeOps)("cpu");
  const f32 = (data: number[], shape: number[]) => native().NativeTensor.fromBytes(Float32Array.from(data), "f32", shape, "cpu");
  const read = (t: { toBytes(): Uint8Array }) => Array.from(new Float32Array(t.toBytes().slice().buffer));

  it("add_rmsnorm keeps the new residual at the rows and columns its capture names, and nothing else", () => {
    const res = f32([1, 2, 3, 4], [2, 2]), x = f32([1, 1, 1, 1], [2, 2]), w = f32([1, 1], [2]), out = f32([0, 0, 0, 0], [2, 2]);
    const dst = f32(Array(3 * 6).fill(-1), [3, 6]);
    const rows = native().NativeTensor.fromBytes(Int32Array.from([2, 0]), "i32", [2], "cpu");
    ops().addRmsnorm(res, x, w, 0, out, { dst, rows, cols: [0, 4] });
    expect(read(res)).toEqual([2, 3, 4, 5]);
    expect(read(dst)).toEqual([4, 5, -1, -1, 4, 5, -1, -1, -1, -1, -1, -1, 2, 3, -1, -1, 2, 3]);
  });

  it("rmsnorm gathers its rows by index and writes them into a column range of wider rows, leaving the rest", () => {
    const table = f32([3, 4, 1, 0, 0, 2], [3, 2]), w = f32([1, 2], [2]), out = f32(Array(2 * 5).fill(-1), [2, 5]);
    const rows = native().NativeTensor.fromBytes(Int32Array.from([2, 0]), "i32", [2], "cpu");
    ops().rmsnorm(table, w, 0, out, { rows, col: 2 });
    // row 2 = [0, 2]: rms √2; row 0 = [3, 4]: rms √12.5
    const want = [-1, -1, 0, 2 / Math.SQRT2 * 2, -1, -1, -1, 3 / Math.sqrt(12.5), 4 / Math.sqrt(12.5) * 2, -1];
    read(out).forEach((v, i) => expect(v, `element ${i}`).toBeCloseTo(want[i], 5));
    const bad = [
      { at: { rows: native().NativeTensor.fromBytes(Int32Array.from([3]), "i32", [1], "cpu") }, out: f32([0, 0], [1, 2]), what: /row index 3/ },
      { at: { col: 4 }, out: f32(Array(15).fill(0), [3, 5]), what: /do not fit/ },
      { at: { col: -1 }, out: f32(Array(6).fill(0), [3, 2]), what: /negative/ },
    ];
    for (const b of bad)
      expect(() => ops().rmsnorm(table, w, 1e-6, b.out, b.at)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(b.what) }));
  });

  it("takes an attention split cap of 0 to 64 (a no-op on the CPU) and refuses others by name", () => {
    for (const n of [0, 1, 64]) expect(() => ops().setAttentionSplits(n)).not.toThrow();
    for (const n of [-1, 65, 2.5, Number.NaN])
      expect(() => ops().setAttentionSplits(n)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/attention splits/) }));
  });

  it("refuses a capture outside its destination or of more than three blocks, with ERR_INVALID_ARGUMENT", () => {
    const t = () => f32([1, 2, 3, 4], [2, 2]), w = f32([1, 1], [2]);
    const bad = [
      { dst: f32(Array(8).fill(0), [2, 4]), cols: [3] },
      { dst: f32(Array(16).fill(0), [2, 8]), cols: [0, 2, 4, 6] },
      { dst: f32(Array(4).fill(0), [1, 4]), cols: [0] },
      { dst: f32(Array(8).fill(0), [2, 4]), rows: native().NativeTensor.fromBytes(Int32Array.from([0, 5]), "i32", [2], "cpu"), cols: [0] },
    ];
    for (const capture of bad)
      expect(() => ops().addRmsnorm(t(), t(), w, 1e-6, t(), capture)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARGUMENT", message: expect.stringMatching(/capture/) }));
  });
});
