/** Validation of user options (sharp style): each bad value names the option, expectation and value. */
import { invalidParameter } from "./errors.js";

export function positiveInt(name: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw invalidParameter(name, "a positive integer", v);
  return v;
}

export function nonNegativeInt(name: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw invalidParameter(name, "a non-negative integer", v);
  return v;
}

export function numberIn(name: string, v: unknown, def: number, min: number, max: number, minOpen = false): number {
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isFinite(v) || v > max || (minOpen ? v <= min : v < min))
    throw invalidParameter(name, `a number ${minOpen ? ">" : ">="} ${min} and <= ${max}`, v);
  return v;
}

export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[], def: T): T {
  if (v === undefined) return def;
  if (typeof v !== "string" || !allowed.includes(v as T)) throw invalidParameter(name, `one of ${allowed.join(", ")}`, v);
  return v as T;
}

export function stringList(name: string, v: unknown): string[] {
  if (v === undefined) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string" || s === ""))
    throw invalidParameter(name, "a non-empty string or an array of them", v);
  return list as string[];
}

export function optionalString(name: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") throw invalidParameter(name, "a non-empty string", v);
  return v;
}
