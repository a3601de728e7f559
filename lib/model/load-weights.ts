/**
 * Streams a weight plan into native tensors: one allocation per slot, then every checkpoint file
 * read by the addon off the main thread through a bounded staging buffer.
 */
import { DTYPE_BYTES, numel } from "./dtype.js";
import type { WeightPlan } from "./weight-plan.js";
import { type DeviceName, type LoadEntry, type NativeTensor, native } from "../native.js";

export interface LoadProgress {
  bytesLoaded: number;
  bytesTotal: number;
  fraction: number;
}

export async function loadWeights(
  plan: WeightPlan,
  device: DeviceName,
  onProgress?: (p: LoadProgress) => void,
): Promise<Map<string, NativeTensor>> {
  const addon = native();
  const tensors = new Map<string, NativeTensor>();
  const byFile = new Map<string, LoadEntry[]>();
  let bytesTotal = 0;
  try {
    for (const slot of plan.slots) {
      const t = addon.NativeTensor.empty(slot.dtype, slot.shape, device);
      tensors.set(slot.key, t);
      let dstOffset = 0;
      for (const src of slot.sources) {
        const entries = byFile.get(src.file) ?? [];
        entries.push({ name: src.name, tensor: t, dstOffset, fileOffset: src.dataOffset, byteLength: src.byteLength, srcDtype: src.dtype });
        byFile.set(src.file, entries);
        dstOffset += numel(src.shape) * DTYPE_BYTES[slot.dtype];
        bytesTotal += src.byteLength;
      }
    }
    let before = 0;
    for (const [file, entries] of byFile) {
      entries.sort((a, b) => a.fileOffset - b.fileOffset);
      const base = before;
      await addon.loadTensors(file, entries, (done) =>
        onProgress?.({ bytesLoaded: base + done, bytesTotal, fraction: bytesTotal ? (base + done) / bytesTotal : 1 }),
      );
      before += entries.reduce((n, e) => n + e.byteLength, 0);
    }
    onProgress?.({ bytesLoaded: bytesTotal, bytesTotal, fraction: 1 });
    return tensors;
  } catch (err) {
    for (const t of tensors.values()) t.dispose();  // nothing half-loaded stays behind
    throw err;
  }
}
