/** What the CLI's reports share: number formatting, and the tally of a checkpoint's tensors. */
import { numel } from "../model/dtype.js";

/** 1234567 → "1.23 M" (decimal units). */
export function count(n: number): string {
  const units: Array<[number, string]> = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, u] of units) if (n >= v) return `${(n / v).toFixed(2)} ${u}`;
  return `${n} `;
}

/** Parameters, bytes and tensors per dtype of checkpoint tensors (headers only). */
export function tallyTensors(tensors: Iterable<{ dtype: string; shape: number[]; byteLength: number }>) {
  const dtypes: Record<string, number> = {};
  let parameters = 0, bytes = 0;
  for (const t of tensors) {
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    parameters += numel(t.shape);
    bytes += t.byteLength;
  }
  return { parameters, bytes, dtypes };
}
