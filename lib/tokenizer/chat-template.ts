/** A model's Jinja chat template, rendered with @huggingface/jinja the way transformers renders it. */
import { Template } from "@huggingface/jinja";
import { Eagle3Error, ErrorCode, invalidArgument } from "../errors.js";

export interface ChatMessage {
  role: string;
  content: string;
  /** Further fields some templates read: reasoning_content, tool_calls, name... */
  [field: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Default true: end with the opening of the assistant turn. */
  addGenerationPrompt?: boolean;
  /** Qwen3 templates read it; left undefined when not given, as templates test `is defined`. */
  enableThinking?: boolean;
  tools?: unknown[];
  /** Further template variables; the named options above win over these. */
  extra?: Record<string, unknown>;
}

export interface SpecialTokens {
  bosToken?: string;
  eosToken?: string;
}

export class ChatTemplate {
  readonly #template: Template;

  /** `origin` names where the template came from, for error messages. */
  constructor(
    source: string,
    readonly origin: string,
  ) {
    try {
      this.#template = new Template(source);
    } catch (e) {
      throw new Eagle3Error(ErrorCode.BAD_TOKENIZER, `Chat template in ${origin} does not parse: ${message(e)}`, {
        cause: e,
      });
    }
  }

  render(messages: ChatMessage[], opts: ChatTemplateOptions = {}, special: SpecialTokens = {}): string {
    checkMessages(messages);
    const named = {
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: special.bosToken,
      eos_token: special.eosToken,
      tools: opts.tools,
      enable_thinking: opts.enableThinking,
    };
    const vars = { ...opts.extra, ...Object.fromEntries(Object.entries(named).filter(([, v]) => v !== undefined)) };
    try {
      return this.#template.render(vars);
    } catch (e) {
      throw new Eagle3Error(ErrorCode.BAD_TOKENIZER, `Chat template in ${this.origin} failed: ${message(e)}`, {
        cause: e,
      });
    }
  }
}

function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0)
    throw invalidArgument("Expected a non-empty array of messages");
  messages.forEach((m: unknown, i) => {
    const { role, content } = (m ?? {}) as Record<string, unknown>;
    if (typeof m !== "object" || typeof role !== "string" || typeof content !== "string")
      throw invalidArgument(`messages[${i}] must be an object with string role and content`);
  });
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
