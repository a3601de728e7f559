/** Thin wrapper over node:util parseArgs with per-command help and typed conversions. */
import { type ParseArgsConfig, parseArgs } from "node:util";
import type { Speculation } from "../spec/speculation-policy.js";
import type { TreeShape } from "../spec/tree-policy.js";

export class UsageError extends Error {
  constructor(message: string, readonly help: string) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  help: string;
}

/** Parses argv; returns undefined after printing help when --help is given. */
export function parse(argv: string[], options: Options, help: string, allowPositionals = false): Parsed | undefined {
  let r;
  try {
    r = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message, help);
  }
  if (r.values.help) {
    console.log(help);
    return undefined;
  }
  return { values: r.values as Parsed["values"], positionals: r.positionals, help };
}

export function num(p: Parsed, name: string): number | undefined {
  const v = p.values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`, p.help);
  return n;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

/** --tree S,K,N: the draft tree (steps, top-k, draft tokens). */
export function treeOf(p: Parsed): TreeShape | undefined {
  const tree = str(p, "tree")?.split(",").map(Number);
  if (tree && (tree.length !== 3 || tree.some((x) => !Number.isInteger(x)))) throw new UsageError("--tree takes S,K,N", p.help);
  return tree && { steps: tree[0], topk: tree[1], draftTokens: tree[2] };
}

/** --speculation auto|always (default auto). */
export function speculationOf(p: Parsed): Speculation {
  const v = str(p, "speculation") ?? "auto";
  if (v !== "auto" && v !== "always") throw new UsageError("--speculation takes auto or always", p.help);
  return v;
}
