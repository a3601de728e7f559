/**
 * The tensors of a checkpoint directory: one model.safetensors, or the shards that
 * model.safetensors.index.json lists. Only headers are read; the index and the shards are checked
 * against each other so that no tensor is silently lost or taken from the wrong file.
 */
import { readFile, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { badCheckpoint } from "../errors.js";
import { type SafetensorsFile, type TensorEntry, findDuplicateKey, isObject, readSafetensorsHeader } from "./safetensors.js";

export interface Checkpoint {
  /** Absolute path. */
  dir: string;
  files: SafetensorsFile[];
  tensors: Map<string, TensorEntry>;
  /** Tensor data bytes over all files (headers and padding not counted). */
  totalBytes: number;
  format: "safetensors";
  sharded: boolean;
}

const SINGLE = "model.safetensors";
const INDEX = "model.safetensors.index.json";
const PYTORCH = ["pytorch_model.bin", "pytorch_model.bin.index.json"];

export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const root = resolve(dir);
  const kind = await pathKind(root);
  if (kind !== "dir") throw badCheckpoint(`${root}: ${kind === "missing" ? "no such directory" : "not a directory"}`);
  // transformers prefers the single file when both are present; so do we.
  if ((await pathKind(join(root, SINGLE))) === "file") {
    const f = await readSafetensorsHeader(join(root, SINGLE));
    return checkpoint(root, [f], f.tensors, false);
  }
  if ((await pathKind(join(root, INDEX))) === "file") return openSharded(root);
  const kinds = await Promise.all(PYTORCH.map((p) => pathKind(join(root, p))));
  const pytorch = PYTORCH.filter((_, i) => kinds[i] === "file");
  throw badCheckpoint(
    `${root}: found neither ${SINGLE} nor ${INDEX}` +
      (pytorch.length ? `; ${pytorch.join(" and ")} is present but not read here (convert it to safetensors)` : ""),
  );
}

async function openSharded(root: string): Promise<Checkpoint> {
  const indexPath = join(root, INDEX);
  let text: string;
  try {
    text = await readFile(indexPath, "utf8");
  } catch (err) {
    throw badCheckpoint(`${indexPath}: cannot be read (${(err as NodeJS.ErrnoException).code ?? err})`, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw badCheckpoint(`${indexPath}: not valid JSON (${(err as Error).message})`, err);
  }
  if (!isObject(json)) throw badCheckpoint(`${indexPath}: not a JSON object`);
  const weightMap = json.weight_map;
  if (!isObject(weightMap)) throw badCheckpoint(`${indexPath}: weight_map is missing or not an object`);
  const dup = findDuplicateKey(text);
  if (dup)
    throw badCheckpoint(
      dup.path.length === 1 && dup.path[0] === "weight_map"
        ? `${indexPath}: weight_map names tensor "${dup.key}" twice`
        : `${indexPath}: key "${dup.key}" appears twice in ${dup.path.join(".") || "the top-level object"}`,
    );

  const listed = new Map<string, string>(); // tensor → absolute shard path
  for (const [tensor, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard === "")
      throw badCheckpoint(`${indexPath}: weight_map entry for tensor "${tensor}" is not a file name`);
    const path = resolve(root, shard);
    const rel = relative(root, path);
    // Lexical check only: shards in a Hugging Face cache are symlinks into ../../blobs.
    if (rel === "" || rel.split(sep)[0] === ".." || isAbsolute(rel))
      throw badCheckpoint(`${indexPath}: shard "${shard}" (for tensor "${tensor}") lies outside ${root}`);
    listed.set(tensor, path);
  }
  if (listed.size === 0) throw badCheckpoint(`${indexPath}: weight_map is empty`);

  const shards = [...new Set(listed.values())].sort();
  const kinds = await Promise.all(shards.map(pathKind));
  const missing = shards.filter((_, i) => kinds[i] !== "file");
  if (missing.length) throw badCheckpoint(`${indexPath} names shards missing from ${root}: ${missing.join(", ")}`);
  const files = await Promise.all(shards.map(readSafetensorsHeader));

  const tensors = new Map<string, TensorEntry>();
  for (const f of files)
    for (const [name, e] of f.tensors) {
      const other = tensors.get(name);
      if (other) throw badCheckpoint(`${root}: tensor "${name}" is in two shards, ${other.file} and ${f.path}`);
      tensors.set(name, e);
    }
  for (const [tensor, shard] of listed)
    if (tensors.get(tensor)?.file !== shard)
      throw badCheckpoint(`${indexPath}: tensor "${tensor}" is listed in ${shard}, which does not contain it`);
  return checkpoint(root, files, tensors, true);
}

function checkpoint(dir: string, files: SafetensorsFile[], tensors: Map<string, TensorEntry>, sharded: boolean): Checkpoint {
  let totalBytes = 0;
  for (const e of tensors.values()) totalBytes += e.byteLength;
  return { dir, files, tensors, totalBytes, format: "safetensors", sharded };
}

async function pathKind(path: string): Promise<"file" | "dir" | "other" | "missing"> {
  try {
    const st = await stat(path);
    return st.isFile() ? "file" : st.isDirectory() ? "dir" : "other";
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return "missing";
    throw badCheckpoint(`${path}: cannot be examined (${code ?? err})`, err);
  }
}
