/** Assertions on the coded errors the library throws: an Eagle3Error with `code` whose message contains every fragment. */
import { expect } from "vitest";
import { Eagle3Error } from "../../lib/errors.js";

function expectCoded(err: unknown, code: string, fragments: string[]): void {
  expect(err).toBeInstanceOf(Eagle3Error);
  expect((err as Eagle3Error).code).toBe(code);
  for (const f of fragments) expect((err as Error).message).toContain(f);
}

export function expectThrows(fn: () => unknown, code: string, ...fragments: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expectCoded(err, code, fragments);
}

export async function expectRejects(p: Promise<unknown>, code: string, ...fragments: string[]): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expectCoded(err, code, fragments);
}
