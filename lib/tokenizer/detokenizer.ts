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
    this.#window = this.#window.slice(-PREFIX_TOKENS);
    this.#prefixTokens = this.#window.length;
    const prefixText = this.#prefixText;
    this.#prefixText = this.#decode(this.#window);
    return text.slice(prefixText.length);
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
