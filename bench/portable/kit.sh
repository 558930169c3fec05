#!/usr/bin/env bash
# Builds a self-contained training-throughput kit in KIT (default .gpu-kit): this
# repo's training code bundled into one file, Dawn's WebGPU addon, the WASM
# backend's binaries, this machine's `node` and the batches file that export.ts
# wrote to BATCHES (default .fti/scratch/week), the large files compressed so the kit
# travels in ~35 MB. On the target (x86-64 Linux, glibc, a Vulkan loader and driver),
# with nothing installed:
#   sh run.sh      # unpacks, then trains on the GPU pool's own pick and on WASM,
#                  # logs (and nvidia-smi's utilisation, where there is one) in $OUT
# or by hand, after `sh unpack.sh`: `./node train.mjs week`, FTI_TFJS_BACKEND to force one.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
kit=${KIT:-$here/.gpu-kit}
batches=${BATCHES:-$here/.fti/scratch/week}
test -f "$batches.f32" || { echo "no $batches.f32: run bench/portable/export.ts first" >&2; exit 1; }
cd "$here"
mkdir -p "$kit"
# ESM with the CommonJS globals the bundled packages expect (the WASM backend finds its
# binaries next to __dirname).
banner='import { createRequire } from "node:module"; import { fileURLToPath } from "node:url"; import { dirname } from "node:path"; const require = createRequire(import.meta.url); const __filename = fileURLToPath(import.meta.url); const __dirname = dirname(__filename);'
npx esbuild bench/portable/train.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
  --external:webgpu --external:@tensorflow/tfjs-node-gpu --external:@tensorflow/tfjs-node \
  --banner:js="$banner" --outfile="$kit/train.mjs"
cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$kit/"
mkdir -p "$kit/node_modules/webgpu/dist/linux-x64"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$kit/node_modules/webgpu/"
xz -T2 -c node_modules/webgpu/dist/linux-x64/dawn.node > "$kit/dawn.node.xz"
test -f "$kit/node.xz" || xz -T2 -c "$(command -v node)" > "$kit/node.xz"
cp "$batches.json" "$kit/week.json"
gzip -c "$batches.f32" > "$kit/week.f32.gz"
cat > "$kit/unpack.sh" <<'UNPACK'
cd "$(dirname "$0")" && xz -dc node.xz > node && chmod +x node && xz -dc dawn.node.xz > node_modules/webgpu/dist/linux-x64/dawn.node && gunzip -kf week.f32.gz
UNPACK
cat > "$kit/run.sh" <<'RUN'
cd "$(dirname "$0")" && sh unpack.sh || exit 1
out=${OUT:-.}; sizes=${BATCH_SIZES:-512,1024,4096,16384}; epochs=${EPOCHS:-4}
./node -v; nproc; grep -m1 'model name' /proc/cpuinfo
if command -v nvidia-smi >/dev/null; then nvidia-smi -L; nvidia-smi dmon -s um -d 1 > "$out/dmon.log" 2>&1 & dmon=$!; fi
echo "== the GPU pool's own pick"
EPOCHS=$epochs BATCH_SIZES=$sizes timeout 240 ./node train.mjs week 2>&1 | grep -v 'artificially reduced' | tee "$out/gpu.log"
[ -n "${dmon:-}" ] && kill "$dmon"
echo "== WASM, the CPU pool's backend, on the same machine"
FTI_TFJS_BACKEND=wasm EPOCHS=$epochs BATCH_SIZES=$sizes timeout 150 ./node train.mjs week 2>&1 | tee "$out/wasm.log"
RUN
du -sh "$kit"
