/** The `eagle3` command: dispatches to one module per subcommand and maps errors to exit codes. */
import { Eagle3Error } from "../errors.js";
import { UsageError } from "./args.js";

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  generate: { summary: "generate text from a prompt or chat messages", run: async (a) => (await import("./generate.js")).run(a) },
  inspect: { summary: "describe a checkpoint directory and whether it will load", run: async (a) => (await import("./inspect.js")).run(a) },
  bench: { summary: "baseline against EAGLE-3 tokens/s, or the target's speed on random weights", run: async (a) => (await import("./bench.js")).run(a) },
  env: { summary: "print Node, addon build, CUDA driver/runtime and GPUs", run: async (a) => (await import("./env.js")).run(a) },
};

export function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: eagle3 <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nRun eagle3 <command> --help for its options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`eagle3: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`eagle3 ${name}: ${err.message}\n\n${err.help}`);
      return 2;
    }
    const code = err instanceof Eagle3Error ? err.code : ((err as { code?: string }).code ?? "ERR_INTERNAL");
    console.error(`eagle3 ${name}: error ${code}: ${(err as Error).message}`);
    return 1;
  }
}
