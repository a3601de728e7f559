/**
 * Engine: one target model (optionally with an EAGLE-3 draft), its tokenizer and scheduler.
 * generate() streams chunks; complete() collects them.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Eagle3Error, ErrorCode, invalidArgument } from "./errors.js";
import { readEosTokenIds } from "./model/generation-config.js";
import { Scheduler, type SchedulerStats } from "./batch/scheduler.js";
import type { FinishReason } from "./batch/sequence.js";
import { type TargetConfig, readTargetConfig } from "./model/config.js";
import type { LoadProgress } from "./model/load-weights.js";
import { TargetModel, kvCachePages as kvPages } from "./model/target.js";
import { openDraft } from "./model/draft.js";
import type { AuxLayerConvention } from "./model/draft-config.js";
import { type TreeShape, TreePolicy } from "./spec/tree-policy.js";
import type { Speculation } from "./spec/speculation-policy.js";
import type { SpeculativeStats } from "./spec/stats.js";
import { type DeviceName, native } from "./native.js";
import { nonNegativeInt, numberIn, oneOf, optionalString, positiveInt, stringList } from "./options.js";
import { type ChatMessage, Tokenizer } from "./tokenizer/tokenizer.js";
import { StreamingDetokenizer } from "./tokenizer/detokenizer.js";
import { StopMatcher } from "./stop-matcher.js";

export interface EngineOptions {
  /** Hugging Face model directory (config.json, *.safetensors, tokenizer files). */
  model: string;
  /** EAGLE-3 draft directory; without it, plain decoding. */
  draft?: string;
  /** Draft tree (steps, topk, draftTokens); default: chosen per batch size from measured speed. */
  tree?: TreeShape;
  /**
   * "auto" (default): per batch size, speculate (and pick the tree) only where it measures faster
   * than plain decoding; "always": a speculative round every iteration.
   */
  speculation?: Speculation;
  /** Time the phases of one speculative round in this many (eager, slower rounds); 0 = never. */
  profileEvery?: number;
  /** How the draft's explicit aux-layer ids count (default: by checkpoint family). */
  auxLayerConvention?: AuxLayerConvention;
  /**
   * Directory of tokenizer.json / tokenizer_config.json when the model directory lacks them. Without
   * either, the engine takes token ids only ({ tokens }) and streams no text.
   */
  tokenizer?: string;
  /** "cuda" when a usable GPU is present, else "cpu" (the reference path, for tiny models). */
  device?: DeviceName;
  /** Longest prompt + completion of one request, in tokens. */
  maxContext?: number;
  /** Requests decoded together. */
  maxBatch?: number;
  /** Most tokens in one forward step (bounds prefill chunks). */
  maxStepTokens?: number;
  /** Tokens per KV cache page. */
  pageSize?: number;
  /** Share of the GPU memory left after the weights that the KV cache may take (default 0.9). */
  kvCacheFraction?: number;
  /** Requests that may wait for a slot before generate() throws ERR_QUEUE_FULL. */
  maxQueued?: number;
  /** Reject config.json fields this engine does not know (default true). */
  strictConfig?: boolean;
  onProgress?: (p: LoadProgress) => void;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Strings that end the completion (not included in the text). */
  stop?: string | string[];
  /** Keep going past the model's end-of-sequence tokens. */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /** Chat template switches, e.g. Qwen3's thinking mode. */
  enableThinking?: boolean;
}

export type GenerateInput = string | ChatMessage[] | { tokens: number[] };

export interface GenerationChunk {
  text: string;
  tokens: number[];
  finishReason?: FinishReason;
  /** On the last chunk, with a draft: this request's rounds, accepted lengths and round times. */
  speculative?: SpeculativeStats;
}

export interface Completion {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  timings: { firstTokenMs: number; totalMs: number; tokensPerSecond: number };
  /** With a draft: this request's rounds, accepted lengths and the time of the rounds it was in. */
  speculative?: SpeculativeStats;
}

export interface EngineStats extends SchedulerStats {
  device: DeviceName;
}

export class Engine {
  private disposed = false;

  private constructor(
    readonly target: TargetModel,
    readonly tokenizer: Tokenizer | undefined,
    private readonly scheduler: Scheduler,
    readonly maxContext: number,
    private readonly eosTokenIds: readonly number[],
  ) {}

  static async load(options: EngineOptions): Promise<Engine> {
    if (typeof options !== "object" || options === null) throw invalidArgument("Engine.load needs an options object");
    const model = optionalString("model", options.model);
    if (!model) throw invalidArgument("Engine.load: option `model` (a model directory) is required");
    const device = oneOf<DeviceName>("device", options.device, ["cuda", "cpu"], defaultDevice());
    const pageSize = positiveInt("pageSize", options.pageSize, 16);
    const maxBatch = positiveInt("maxBatch", options.maxBatch, device === "cuda" ? 64 : 4);
    const maxStepTokens = positiveInt("maxStepTokens", options.maxStepTokens, device === "cuda" ? 2048 : 256);
    const maxQueued = nonNegativeInt("maxQueued", options.maxQueued, 1024);
    const tokenizerDir = optionalString("tokenizer", options.tokenizer);
    const tokenizer = tokenizerDir || existsSync(join(model, "tokenizer.json")) ? await Tokenizer.fromDir(model, { tokenizerDir }) : undefined;
    const eos = tokenizer ? tokenizer.eosTokenIds : await readEosTokenIds(model);
    const { config } = await readTargetConfig(model, { strict: options.strictConfig ?? true });
    const maxContext = positiveInt("maxContext", options.maxContext, Math.min(config.maxPositionEmbeddings, 8192));
    if (maxContext > config.maxPositionEmbeddings)
      throw invalidArgument(`maxContext ${maxContext} exceeds the model's max_position_embeddings ${config.maxPositionEmbeddings}`);
    const draftDir = optionalString("draft", options.draft);
    const draft = draftDir
      ? await openDraft(draftDir, config, maxBatch, { strictConfig: options.strictConfig, auxConvention: options.auxLayerConvention })
      : undefined;
    const tree = draft ? new TreePolicy(options.tree) : undefined;
    const scratch = tree ? tree.scratchTokens + 1 : 0;
    const numPages = kvPages(config, device, {
      wanted: Math.ceil((maxContext + scratch) / pageSize) * maxBatch, atLeast: Math.ceil((maxContext + scratch) / pageSize), pageSize, maxStepTokens,
      fraction: numberIn("kvCacheFraction", options.kvCacheFraction, 0.9, 0, 1, true), source: model, draft,
    });
    const target = await TargetModel.load(model, {
      device, maxStepTokens: Math.max(maxStepTokens, tree?.verifyRows(maxBatch) ?? 0), maxLogitRows: tree?.verifyRows(maxBatch) ?? maxBatch,
      numPages, pageSize, strictConfig: options.strictConfig, onProgress: options.onProgress,
    }, config, draft);
    const speculation = oneOf("speculation", options.speculation, ["auto", "always"] as const, "auto");
    const profileEvery = nonNegativeInt("profileEvery", options.profileEvery, 0);
    const scheduler = new Scheduler(target, { maxStepTokens, numPages, pageSize, maxRunning: maxBatch, maxQueued, tree, speculation, profileEvery });
    return new Engine(target, tokenizer, scheduler, maxContext, eos);
  }

  get config(): TargetConfig {
    return this.target.config;
  }

  get device(): DeviceName {
    return this.target.options.device;
  }

  /** Streams the completion of `input` chunk by chunk. */
  generate(input: GenerateInput, options: GenerateOptions = {}): AsyncGenerator<GenerationChunk> {
    this.checkLive();
    const o = parseGenerateOptions(options);
    return this.stream(this.encode(input, { enableThinking: o.enableThinking }), o);
  }

  /** Runs generate() to the end and returns the whole completion. */
  async complete(input: GenerateInput, options: GenerateOptions = {}): Promise<Completion> {
    this.checkLive();
    const o = parseGenerateOptions(options);
    const prompt = this.encode(input, { enableThinking: o.enableThinking });
    const t0 = performance.now();
    let first = 0, text = "", finishReason: FinishReason = "length";
    let speculative: SpeculativeStats | undefined;
    const tokens: number[] = [];
    for await (const c of this.stream(prompt, o)) {
      if (!first) first = performance.now();
      text += c.text;
      tokens.push(...c.tokens);
      if (c.finishReason) finishReason = c.finishReason;
      speculative = c.speculative ?? speculative;
    }
    const end = performance.now();
    return {
      text, tokens, finishReason, promptTokens: prompt.length,
      timings: {
        firstTokenMs: (first || end) - t0,
        totalMs: end - t0,
        tokensPerSecond: tokens.length > 1 && end > first ? ((tokens.length - 1) * 1000) / (end - first) : 0,
      },
      ...(speculative && { speculative }),
    };
  }

  private async *stream(prompt: number[], o: ReturnType<typeof parseGenerateOptions>): AsyncGenerator<GenerationChunk> {
    o.signal?.throwIfAborted();
    if (prompt.length === 0) throw invalidArgument("the prompt is empty");
    if (prompt.length >= this.maxContext)
      throw invalidArgument(`the prompt has ${prompt.length} tokens; the context holds ${this.maxContext} (prompt + completion)`);
    const maxNew = Math.min(o.maxTokens, this.maxContext - prompt.length);
    const stopTokens = new Set(o.ignoreEos ? [] : this.eosTokenIds);
    const seq = this.scheduler.submit(prompt, maxNew, o.sampling, stopTokens);
    const onAbort = () => this.scheduler.cancel(seq);
    o.signal?.addEventListener("abort", onAbort, { once: true });
    const detok = this.tokenizer ? new StreamingDetokenizer(this.tokenizer) : undefined;
    const stop = new StopMatcher(o.stop);
    try {
      for await (const ev of seq.events) {
        let piece = detok?.push(ev.tokens.filter((t) => !stopTokens.has(t))) ?? "";
        if (ev.finishReason && detok) piece += detok.flush();
        const { text, stopped } = stop.push(piece);
        const speculative = (stopped || ev.finishReason) && seq.speculative ? { speculative: seq.speculative.snapshot() } : {};
        if (stopped) {
          yield { text, tokens: ev.tokens, finishReason: "stop", ...speculative };
          return;
        }
        yield { text: ev.finishReason ? text + stop.flush() : text, tokens: ev.tokens, finishReason: ev.finishReason, ...speculative };
      }
      if (seq.finishReason === "abort")
        throw new Eagle3Error(ErrorCode.ABORTED, "generation was aborted", { cause: o.signal?.reason });
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
      this.scheduler.cancel(seq);  // a consumer that stops early frees the slot
    }
  }

  stats(): EngineStats {
    return { device: this.device, ...this.scheduler.stats() };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.scheduler.idle();
    this.target.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** The token ids generate() and complete() feed the model for `input` (chat messages: with the generation prompt). */
  encode(input: GenerateInput, options: { enableThinking?: boolean } = {}): number[] {
    if (typeof options !== "object" || options === null) throw invalidArgument("encode options must be an object");
    const { enableThinking } = options;
    if (typeof input === "string") return this.needTokenizer().encode(input);
    if (Array.isArray(input)) return this.needTokenizer().encodeChat(input, { addGenerationPrompt: true, enableThinking });
    if (input && Array.isArray((input as { tokens: unknown }).tokens)) {
      const ids = (input as { tokens: number[] }).tokens;
      const bad = ids.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= this.config.vocabSize);
      if (bad >= 0) throw invalidArgument(`tokens[${bad}] = ${ids[bad]} is not a token id of this model (0..${this.config.vocabSize - 1})`);
      return ids;
    }
    throw invalidArgument("input must be a string, an array of chat messages, or { tokens: number[] }");
  }

  private needTokenizer(): Tokenizer {
    if (!this.tokenizer)
      throw new Eagle3Error(ErrorCode.BAD_TOKENIZER, `${this.target.source} has no tokenizer.json and no tokenizer option was given: pass { tokens } or a tokenizer directory`);
    return this.tokenizer;
  }

  private checkLive(): void {
    if (this.disposed) throw invalidArgument("the engine was disposed");
  }
}

function defaultDevice(): DeviceName {
  const st = native().cudaStatus();
  return st.compiled && !st.error && st.gpus.length > 0 ? "cuda" : "cpu";
}

function parseGenerateOptions(o: GenerateOptions) {
  if (typeof o !== "object" || o === null) throw invalidArgument("generate options must be an object");
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw invalidArgument("signal must be an AbortSignal");
  return {
    maxTokens: positiveInt("maxTokens", o.maxTokens, 256),
    sampling: {
      temperature: numberIn("temperature", o.temperature, 0, 0, 100),
      topK: nonNegativeInt("topK", o.topK, 0),
      topP: numberIn("topP", o.topP, 1, 0, 1, true),
      seed: nonNegativeInt("seed", o.seed, Math.floor(Math.random() * 2 ** 32)),
    },
    stop: stringList("stop", o.stop),
    ignoreEos: o.ignoreEos ?? false,
    signal: o.signal,
    enableThinking: o.enableThinking,
  };
}
