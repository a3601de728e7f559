/**
 * Maps checkpoint tensors onto the native weight layout. Tensors that the kernels want fused
 * (q|k|v, gate|up) are planned as one destination whose rows are filled from several sources,
 * so the fusion costs no copy at load time. Checkpoint layouts stay [out, in]; nothing is
 * transposed.
 */
import { badCheckpoint, unsupportedModel } from "../errors.js";
import type { DType } from "./dtype.js";
import { DTYPE_BYTES, numel } from "./dtype.js";
import type { TensorEntry } from "./safetensors.js";

export interface WeightSlot {
  /** Native name, e.g. "layers.3.qkv". */
  key: string;
  shape: number[];
  dtype: DType;
  /** Checkpoint tensors stacked along dim 0, in order. */
  sources: TensorEntry[];
}

export interface WeightPlan {
  slots: WeightSlot[];
  /** Checkpoint tensors no slot reads (reported by `eagle3 inspect`). */
  unused: string[];
  bytes: number;
}

const FLOAT_SOURCES = new Set<DType>(["bf16", "f16", "f32"]);

/** The tensors of a checkpoint, by name (safetensors shards or a PyTorch .bin). */
export interface TensorSource {
  dir: string;
  tensors: Map<string, TensorEntry>;
}

/** Builds slots for one checkpoint, checking each source's presence, shape and dtype. */
export class WeightPlanner {
  private readonly used = new Set<string>();
  readonly slots: WeightSlot[] = [];

  constructor(private readonly ckpt: TensorSource, private readonly dtype: DType = "bf16") {}

  has(name: string): boolean {
    return this.ckpt.tensors.has(name);
  }

  /** Plans `key` as the row-wise stack of `parts` ([name, expected shape]), viewed as `as` if given. */
  add(key: string, parts: Array<[string, number[]]>, as?: number[]): WeightSlot {
    const sources = parts.map(([name, shape]) => this.source(name, shape));
    const shape = [...parts[0][1]];
    shape[0] = parts.reduce((n, [, s]) => n + s[0], 0);
    if (as) {
      if (numel(as) !== numel(shape)) throw new Error(`internal: ${key} viewed as [${as}] from [${shape}]`);
      shape.splice(0, shape.length, ...as);
    }
    const slot = { key, shape, dtype: this.dtype, sources };
    this.slots.push(slot);
    return slot;
  }

  finish(): WeightPlan {
    const unused = [...this.ckpt.tensors.keys()].filter((n) => !this.used.has(n)).sort();
    const bytes = this.slots.reduce((n, s) => n + numel(s.shape) * DTYPE_BYTES[s.dtype], 0);
    return { slots: this.slots, unused, bytes };
  }

  /** Marks a tensor as read elsewhere (e.g. the draft's d2t), so it is not reported unused. */
  use(name: string): TensorEntry | undefined {
    const e = this.ckpt.tensors.get(name);
    if (e) this.used.add(name);
    return e;
  }

  private source(name: string, shape: number[]): TensorEntry {
    const e = this.ckpt.tensors.get(name);
    if (!e) throw badCheckpoint(`${this.ckpt.dir}: tensor ${name} is missing (expected shape [${shape}])`);
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i]))
      throw badCheckpoint(`${e.file}: tensor ${name} has shape [${e.shape}], expected [${shape}]`);
    if (e.dtype === "f8_e4m3")
      throw unsupportedModel(`${e.file}: tensor ${name} is FP8 (f8_e4m3); quantized checkpoints are not supported`);
    if (!FLOAT_SOURCES.has(e.dtype))
      throw badCheckpoint(`${e.file}: tensor ${name} has dtype ${e.dtype}, expected a float type`);
    this.used.add(name);
    return e;
  }
}
