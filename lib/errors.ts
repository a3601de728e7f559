/** Stable error codes: every error this package throws carries one of these as `code`. */
export const ErrorCode = {
  BAD_CHECKPOINT: "ERR_BAD_CHECKPOINT",
  UNSUPPORTED_MODEL: "ERR_UNSUPPORTED_MODEL",
  DRAFT_MISMATCH: "ERR_DRAFT_MISMATCH",
  OUT_OF_MEMORY: "ERR_OUT_OF_MEMORY",
  NO_CUDA_DEVICE: "ERR_NO_CUDA_DEVICE",
  INVALID_ARGUMENT: "ERR_INVALID_ARGUMENT",
  ABORTED: "ERR_ABORTED",
  QUEUE_FULL: "ERR_QUEUE_FULL",
  BAD_TOKENIZER: "ERR_BAD_TOKENIZER",
  NATIVE_NOT_BUILT: "ERR_NATIVE_NOT_BUILT",
  CUDA: "ERR_CUDA",
  INTERNAL: "ERR_INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The one error class of the package: a message naming what was wrong, and a stable `code`. */
export class Eagle3Error extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "Eagle3Error";
    this.code = code;
  }
}

export const badCheckpoint = (msg: string, cause?: unknown) =>
  new Eagle3Error(ErrorCode.BAD_CHECKPOINT, msg, { cause });
export const unsupportedModel = (msg: string) => new Eagle3Error(ErrorCode.UNSUPPORTED_MODEL, msg);
export const invalidArgument = (msg: string) => new Eagle3Error(ErrorCode.INVALID_ARGUMENT, msg);
export const draftMismatch = (msg: string) => new Eagle3Error(ErrorCode.DRAFT_MISMATCH, msg);

/** sharp-style option check: `invalidParameter("maxTokens", "a positive integer", v)`. */
export function invalidParameter(name: string, expected: string, actual: unknown): Eagle3Error {
  const shown = typeof actual === "string" ? JSON.stringify(actual) : String(actual);
  return invalidArgument(`Expected ${expected} for ${name} but received ${shown} of type ${typeof actual}`);
}
