/** `eagle3 env`: what this machine and this build can do. */
import { addonPath, native } from "../native.js";
import { parse } from "./args.js";

const HELP = `usage: eagle3 env [--json]

Prints Node.js, the addon's build flags, the CUDA driver and runtime, and each GPU with its free
memory. Says plainly when no GPU can be used, and why.`;

export async function run(argv: string[]): Promise<number> {
  const p = parse(argv, { json: { type: "boolean" } }, HELP);
  if (!p) return 0;
  const addon = native();
  const build = addon.buildInfo();
  const cuda = addon.cudaStatus();
  const report = { node: process.version, platform: `${process.platform}-${process.arch}`, addon: addonPath, build, cuda };
  if (p.values.json) {
    console.log(JSON.stringify(report, null, 2));
    return 0;
  }
  const v = (n: number) => (n ? `${Math.floor(n / 1000)}.${(n % 1000) / 10}` : "none");
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  console.log(`node        ${report.node} (${report.platform})`);
  console.log(`addon       ${addonPath}`);
  console.log(`build       ${build.buildType}, N-API ${build.napiVersion}, ${build.cuda ? `CUDA kernels for sm_${build.cudaArch}` : "CPU only (built without nvcc)"}`);
  console.log(`cuda        driver ${v(cuda.driverVersion)}, runtime ${v(cuda.runtimeVersion)}`);
  for (const g of cuda.gpus)
    console.log(`gpu ${g.index}       ${g.name}, sm_${g.computeCapability.replace(".", "")}, ${g.multiprocessors} SMs, ${gib(g.freeBytes)} free of ${gib(g.totalBytes)}`);
  if (cuda.error) console.log(`no GPU      ${cuda.error}; the CPU reference path is available (device "cpu")`);
  return 0;
}
