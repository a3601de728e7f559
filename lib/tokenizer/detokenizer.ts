/**
 * Incremental detokenisation (the prefix/read-offset scheme of TGI, vLLM and node-llama-cpp): decode a short
 * window of recent tokens, emit what it adds past the already emitted prefix, and hold text back while it ends
 * in U+FFFD, the mark of a character whose UTF-8 bytes are split across tokens.
 */

export interface TokenDecoder {
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
}

/** Emitted tokens kept as context: decoders strip a leading space only from the first token they see. */
const PREFIX_TOKENS = 4;
/**
 * The context grows to this many tokens, the text just decoded serving as the next prefix, before it
 * is cut back to PREFIX_TOKENS and decoded once more: about one decode per token instead of two
 * (the decoder's fixed cost per call dominated a 32-sequence step's host time).
 */
const MAX_PREFIX_TOKENS = 8;
/** A character needs at most 4 bytes; a longer run that never completes one is invalid output, let go as is. */
const MAX_HELD_TOKENS = 16;

export class StreamingDetokenizer {
  readonly #tokenizer: TokenDecoder;
  readonly #skipSpecialTokens: boolean;
  /** Prefix tokens (already emitted), then held ones. */
  #window: number[] = [];
  #prefixTokens = 0;
  #prefixText = "";

  /** `skipSpecialTokens` defaults to true, as in vLLM's sampling params. */
  constructor(tokenizer: TokenDecoder, opts: { skipSpecialTokens?: boolean } = {}) {
    this.#tokenizer = tokenizer;
    this.#skipSpecialTokens = opts.skipSpecialTokens ?? true;
  }

  /** Adds the step's tokens; returns the text they complete (often "", sometimes text of earlier tokens). */
  push(ids: number[]): string {
    this.#window.push(...ids);
    const text = this.#decode(this.#window);
    if (text.length <= this.#prefixText.length || text.endsWith("\ufffd")) {
      return this.#window.length - this.#prefixTokens > MAX_HELD_TOKENS ? this.flush() : "";
    }
    const emitted = text.slice(this.#prefixText.length);
    if (this.#window.length > MAX_PREFIX_TOKENS) {
      this.#window = this.#window.slice(-PREFIX_TOKENS);
      this.#prefixText = this.#decode(this.#window);
    } else {
      this.#prefixText = text;
    }
    this.#prefixTokens = this.#window.length;
    return emitted;
  }

  /** Returns whatever is held, incomplete characters included, and starts afresh. */
  flush(): string {
    const text = this.#decode(this.#window).slice(this.#prefixText.length);
    this.#window = [];
    this.#prefixTokens = 0;
    this.#prefixText = "";
    return text;
  }

  #decode(ids: number[]): string {
    return ids.length === 0 ? "" : this.#tokenizer.decode(ids, { skipSpecialTokens: this.#skipSpecialTokens });
  }
}
