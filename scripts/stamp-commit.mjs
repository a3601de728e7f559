// Writes dist/commit.txt (the commit dist was built from, "+" when lib/ or native/ differ from it) so
// that bench results name their commit on machines without the repository's git metadata.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";

const git = (...args) => execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
try {
  let dirty = "";
  try {
    git("diff", "--quiet", "HEAD", "--", "lib", "native");
  } catch {
    dirty = "+";
  }
  writeFileSync(new URL("../dist/commit.txt", import.meta.url), git("rev-parse", "--short", "HEAD").trim() + dirty + "\n");
} catch {
  // Not a git checkout (an installed package): results say "unknown".
}
