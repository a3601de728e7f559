/** A checkpoint's tokenizer: @huggingface/tokenizers over tokenizer.json, plus chat template and stop ids. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Eagle3Error, ErrorCode, invalidArgument, invalidParameter } from "../errors.js";
import { ByteLevelDecoder } from "./byte-level-decoder.js";
import { ChatTemplate, type ChatMessage, type ChatTemplateOptions } from "./chat-template.js";
import { readEosTokenIds } from "../model/generation-config.js";

export type { ChatMessage, ChatTemplateOptions } from "./chat-template.js";

export interface TokenizerLoadOptions {
  /** Directory of the tokenizer files when they are not beside the weights. */
  tokenizerDir?: string;
  /** Token ids that end generation besides the checkpoint's own. */
  extraEos?: number[];
}

type Json = Record<string, unknown>;
/** A template, or why there is none. */
type TemplateSource = { source: string; origin: string } | string;

export class Tokenizer {
  readonly #hf: HfTokenizer;
  readonly #byteLevel?: ByteLevelDecoder;
  readonly #templateSource: TemplateSource;
  #template?: ChatTemplate;
  readonly #bosToken?: string;
  readonly #eosToken?: string;
  /** generation_config.json's eos_token_id, tokenizer_config.json's eos_token, then `extraEos`. */
  readonly eosTokenIds: readonly number[];
  readonly bosTokenId?: number;
  /** Every id the tokenizer knows, added tokens included (Python's `len(tokenizer)`). */
  readonly vocabSize: number;

  private constructor(
    hf: HfTokenizer,
    config: Json,
    templateSource: TemplateSource,
    generationEos: number[],
    extraEos: number[],
    byteLevel: ByteLevelDecoder | undefined,
  ) {
    this.#hf = hf;
    this.#byteLevel = byteLevel;
    this.#templateSource = templateSource;
    this.#bosToken = tokenContent(config.bos_token);
    this.#eosToken = tokenContent(config.eos_token);
    this.bosTokenId = this.#bosToken === undefined ? undefined : hf.token_to_id(this.#bosToken);
    const configEos = this.#eosToken === undefined ? undefined : hf.token_to_id(this.#eosToken);
    this.vocabSize = hf.get_vocab(true).size;
    for (const id of extraEos)
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw invalidParameter("extraEos", `token ids below ${this.vocabSize}`, id);
    const eos = [...generationEos, ...(configEos === undefined ? [] : [configEos]), ...extraEos];
    this.eosTokenIds = Object.freeze([...new Set(eos)]);
  }

  /**
   * Loads tokenizer.json, tokenizer_config.json and chat_template.jinja from `opts.tokenizerDir ?? dir`,
   * and the stop ids of generation_config.json from `dir`.
   */
  static async fromDir(dir: string, opts: TokenizerLoadOptions = {}): Promise<Tokenizer> {
    const tokDir = opts.tokenizerDir ?? dir;
    const tokenizerFile = path.join(tokDir, "tokenizer.json");
    const configFile = path.join(tokDir, "tokenizer_config.json");
    const jinjaFile = path.join(tokDir, "chat_template.jinja");
    const [tokenizerJson, config, jinja, generationEos] = await Promise.all([
      readJson(tokenizerFile, true),
      readJson(configFile, false),
      readText(jinjaFile, false),
      readEosTokenIds(dir),
    ]);
    // transformers' default since 4.45; tokenizers.js would default to true and rewrite " ." as "."
    const hfConfig = { ...config, clean_up_tokenization_spaces: config?.clean_up_tokenization_spaces ?? false };
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(tokenizerJson!, hfConfig);
    } catch (e) {
      throw badTokenizer(`${tokenizerFile} is not a tokenizer @huggingface/tokenizers can load: ${message(e)}`, e);
    }
    return new Tokenizer(
      hf,
      config ?? {},
      pickTemplate(config, configFile, jinja, jinjaFile),
      generationEos,
      opts.extraEos ?? [],
      ByteLevelDecoder.for((id) => hf.id_to_token(id), tokenizerJson!, hfConfig),
    );
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== "string") throw invalidParameter("text", "a string", text);
    return this.#hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (!Array.isArray(ids) || !ids.every((id) => Number.isInteger(id) && id >= 0))
      throw invalidArgument("Expected an array of non-negative integer token ids");
    // tokenizers.js throws on an empty list where Python returns ""
    if (ids.length === 0) return "";
    const skip = opts.skipSpecialTokens ?? false;
    return this.#byteLevel?.decode(ids, skip) ?? this.#hf.decode(ids, { skip_special_tokens: skip });
  }

  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (typeof this.#templateSource === "string") throw badTokenizer(this.#templateSource);
    this.#template ??= new ChatTemplate(this.#templateSource.source, this.#templateSource.origin);
    return this.#template.render(messages, opts, { bosToken: this.#bosToken, eosToken: this.#eosToken });
  }

  /** The rendered template already holds its special tokens, so none are added again. */
  encodeChat(messages: ChatMessage[], opts: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), { addSpecialTokens: false });
  }

  idToToken(id: number): string | undefined {
    return this.#hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }
}

/** As transformers: chat_template.jinja wins over tokenizer_config.json's chat_template. */
function pickTemplate(
  config: Json | undefined,
  configFile: string,
  jinja: string | undefined,
  jinjaFile: string,
): TemplateSource {
  if (jinja !== undefined) return { source: jinja, origin: jinjaFile };
  const t = config?.chat_template;
  if (typeof t === "string") return { source: t, origin: configFile };
  if (Array.isArray(t)) {
    const entry = t.find((e) => (e as Json | null)?.name === "default") as Json | undefined;
    if (typeof entry?.template === "string")
      return { source: entry.template, origin: `${configFile} (template "default")` };
    return `${configFile} lists chat templates but none named "default"`;
  }
  return `The tokenizer has no chat template: neither ${jinjaFile} nor chat_template in ${configFile}`;
}

/** Special tokens appear as strings or, in older exports, as {content: "..."} objects. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  const content = (v as Json | null)?.content;
  return typeof content === "string" ? content : undefined;
}

async function readText(file: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !required) return undefined;
    throw badTokenizer(code === "ENOENT" ? `Missing tokenizer file ${file}` : `Cannot read ${file}: ${message(e)}`, e);
  }
}

async function readJson(file: string, required: boolean): Promise<Json | undefined> {
  const text = await readText(file, required);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw badTokenizer(`${file} is not valid JSON: ${message(e)}`, e);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw badTokenizer(`${file} must hold a JSON object`);
  return value as Json;
}

const badTokenizer = (msg: string, cause?: unknown) => new Eagle3Error(ErrorCode.BAD_TOKENIZER, msg, { cause });
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
