#!/usr/bin/env bash
# Packs .device/ for scripts/gpu-check.sh (issue #7): a GPU machine that has nvcc, CMake and
# Python but no Node and no network gets this machine's node binary, the node_modules closure
# of vitest (plus node-gyp-build and node-addon-api), dist/, the CPU addon, the prebuilt CUDA
# addon and cuda_tests, and the Node headers (to rebuild the CUDA addon there if its driver is
# older than this toolkit). About 40 MB, under the 64 MiB a device call may carry.
#
#   npx tsc -p tsconfig.json
#   npx cmake-js configure --out build-cuda --CDMLPKIT_CUDA=ON --CDMLPKIT_TESTS=ON
#   cmake --build build-cuda --target mlpkit_cuda cuda_tests --parallel 2
#   bash scripts/gpu-pack.sh
#   then, with the device tool: run bash scripts/gpu-check.sh, carrying [".device"]
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f dist/index.js ] || { echo "dist/ is missing: run npx tsc -p tsconfig.json" >&2; exit 1; }
for f in build-cuda/cuda/mlpkit_cuda.node build-cuda/cuda_tests; do
  [ -f "$f" ] || { echo "$f is missing: build it first (see the header of this script)" >&2; exit 1; }
done

rm -rf .device
mkdir -p .device
node_bin="$(readlink -f "$(command -v node)")"
xz -T2 -6 -c "$node_bin" > .device/node.xz

# The installed dependency closure of the packages the device needs from node_modules.
modules=$(node --input-type=module - vitest node-gyp-build node-addon-api <<'EOF'
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
const root = process.cwd();
const seen = new Set();
function find(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) return null;
  }
}
function visit(dir) {
  if (seen.has(dir)) return;
  seen.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies })) {
    const found = find(dep, dir);
    if (found) visit(found);
  }
}
for (const name of process.argv.slice(2)) {
  const found = find(name, root);
  if (!found) throw new Error(`${name} is not installed: run npm install`);
  visit(found);
}
console.log([...seen].map((d) => relative(root, d)).sort().join('\n'));
EOF
)
# shellcheck disable=SC2086
tar -cf - $modules | xz -T2 -6 > .device/node_modules.tar.xz

binaries=(dist build-cuda/cuda/mlpkit_cuda.node build-cuda/cuda_tests)
[ -f build/Release/mlpkit.node ] && binaries+=(build/Release/mlpkit.node)
tar -cf - "${binaries[@]}" | xz -T2 -6 > .device/build.tar.xz

node_include="$(dirname "$(dirname "$node_bin")")/include/node"
if [ -f "$node_include/node_api.h" ]; then
  tar -cf - -C "$(dirname "$node_include")" node | xz -T2 -6 > .device/node-include.tar.xz
fi

du -ch .device/* | sed 's/^/  /'
echo "packed .device/: now run 'bash scripts/gpu-check.sh' on the GPU machine, carrying .device"
