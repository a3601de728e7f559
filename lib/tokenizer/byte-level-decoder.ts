/**
 * Decoding for tokenizers whose decoder is ByteLevel alone (the Qwen and GPT-2 families). The
 * streaming detokenizer decodes a short window for every token of every sequence, and
 * @huggingface/tokenizers' general decode (a scan of the added tokens per token, the text split into
 * characters and mapped back to bytes each time) was most of a 32-sequence step's host time. This
 * gives the same text from each token's bytes, computed once. Tested against the library on random
 * ids; where anything else is configured, or an id is outside the vocabulary, the library decodes.
 */

/** The id's token string, as the library's vocabulary holds it. */
export type TokenString = (id: number) => string | undefined;

interface TokenizerJson {
  decoder?: { type?: unknown } | null;
  model?: { end_of_word_suffix?: unknown } | null;
  added_tokens?: Array<{ content?: unknown; special?: unknown }>;
}

/** What decoding needs of a token: its bytes, or its text where it is an added token. */
interface Entry {
  bytes?: Uint8Array;
  added?: string;
  special: boolean;
}

export class ByteLevelDecoder {
  readonly #token: TokenString;
  readonly #added: Set<string>;
  readonly #special: Set<string>;
  readonly #entries = new Map<number, Entry>();
  readonly #utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  #buf = new Uint8Array(256);

  private constructor(token: TokenString, added: Set<string>, special: Set<string>) {
    this.#token = token;
    this.#added = added;
    this.#special = special;
  }

  /** The fast decoder where tokenizer.json (and the config the library got) allow it, else undefined. */
  static for(token: TokenString, json: TokenizerJson, config: { additional_special_tokens?: unknown; clean_up_tokenization_spaces?: unknown }) {
    if (json.decoder?.type !== "ByteLevel" || json.model?.end_of_word_suffix || config.clean_up_tokenization_spaces) return undefined;
    const added = new Set<string>(), special = new Set<string>();
    for (const t of json.added_tokens ?? []) {
      if (typeof t.content !== "string") return undefined;
      added.add(t.content);
      if (t.special === true) special.add(t.content);
    }
    // As the library: string entries of additional_special_tokens are skipped with the special tokens.
    const extra = config.additional_special_tokens;
    if (Array.isArray(extra)) for (const t of extra) if (typeof t === "string") special.add(t);
    return new ByteLevelDecoder(token, added, special);
  }

  /** The text of `ids`, or undefined where one is outside the vocabulary (the library decides then). */
  decode(ids: readonly number[], skipSpecialTokens: boolean): string | undefined {
    let text = "", used = 0;
    for (const id of ids) {
      const entry = this.#entries.get(id) ?? this.#entry(id);
      if (entry === undefined) return undefined;
      if (skipSpecialTokens && entry.special) continue;
      if (entry.added !== undefined) {
        // Added tokens are text as they stand; the bytes before them are decoded on their own.
        text += this.#utf8.decode(this.#buf.subarray(0, used)) + entry.added;
        used = 0;
        continue;
      }
      const bytes = entry.bytes!;
      if (used + bytes.length > this.#buf.length) {
        const grown = new Uint8Array(2 * (used + bytes.length));
        grown.set(this.#buf.subarray(0, used));
        this.#buf = grown;
      }
      this.#buf.set(bytes, used);
      used += bytes.length;
    }
    return text + this.#utf8.decode(this.#buf.subarray(0, used));
  }

  #entry(id: number): Entry | undefined {
    const token = this.#token(id);
    if (token === undefined) return undefined;
    const entry: Entry = this.#added.has(token) ? { added: token, special: this.#special.has(token) } : { bytes: tokenBytes(token), special: this.#special.has(token) };
    this.#entries.set(id, entry);
    return entry;
  }
}

/** GPT-2's byte ↔ printable character table: a character's byte (0 for one outside it, as the library). */
const BYTE_OF: ReadonlyMap<number, number> = (() => {
  const map = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(printable ? b : 256 + extra++, b);
  }
  return map;
})();

function tokenBytes(token: string): Uint8Array {
  const out: number[] = [];
  for (const ch of token) out.push(BYTE_OF.get(ch.codePointAt(0)!) ?? 0);
  return Uint8Array.from(out);
}
