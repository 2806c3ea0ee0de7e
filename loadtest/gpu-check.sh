#!/usr/bin/env bash
# The GPU check (loadtest/gpu-check.ts) with the machine's prerequisites checked first, so a
# short GPU lease is not spent finding out that a library is missing. Run from the repository
# root with the built model repository and node_modules carried (docs/benchmarks.md "GPU check"):
#
#   loadtest/gpu-check.sh --models models            # on the GPU machine: exit 0 = PASS
#   loadtest/gpu-check.sh --models models --allow-cpu --quick   # dry run without a GPU: exit 2
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_BIN=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
allow_cpu=0
for a in "$@"; do [[ "$a" == --allow-cpu ]] && allow_cpu=1; done

[[ -f dist/loadtest/gpu-check.js ]] || { echo "gpu-check: dist/loadtest/gpu-check.js missing: run npx tsc -p tsconfig.json (or carry dist/)" >&2; exit 1; }
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
elif (( ! allow_cpu )); then
  echo "gpu-check: no nvidia-smi: no NVIDIA GPU or driver on this machine (--allow-cpu for the dry run)" >&2; exit 1
fi
for lib in libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
  if [[ ! -f "$ORT_BIN/$lib" ]] && (( ! allow_cpu )); then
    echo "gpu-check: no CUDA provider: $ORT_BIN/$lib is missing; it comes from the NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 (ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node on a machine with internet, then carry node_modules)" >&2
    exit 1
  fi
done
# The provider library finds CUDA 12 / cuDNN 9 through the loader path; add pip-installed NVIDIA wheels when present.
for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, os; p = nvidia.__path__[0]; print(" ".join(os.path.join(p, x, "lib") for x in os.listdir(p)))' 2>/dev/null || true); do
  [[ -d "$d" ]] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
# Four minutes at most (GPU_CHECK_TIMEOUT seconds): the lease is short and a hung CUDA init must not
# eat it. The CPU dry run on a loaded 2-core machine can need more: GPU_CHECK_TIMEOUT=600.
exec timeout "${GPU_CHECK_TIMEOUT:-240}" node dist/loadtest/gpu-check.js "$@"
