#!/usr/bin/env bash
# The GPU check (`npm run bench:gpu`), for a machine with an NVIDIA GPU and nothing installed but
# Node 20.19+: installs from the lock file, finds the GPU's WebGPU adapter (refusing a software
# one), builds, runs the WebGPU parity and kernel tests on that adapter, then the benchmark
# (bench/gpu.mjs): the mlp workload and a 4096-wide MLP at batch 512, GFLOP/s on WebGPU and on
# the WASM core with threads = cores, and their ratio. About 5 minutes; exits non-zero, saying
# why, when anything fails or there is no GPU adapter.
#   scripts/gpu-check.sh [--no-install] [--no-build] [--no-tests]
set -euo pipefail
cd "$(dirname "$0")/.."
install=1; build=1; tests=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    --no-tests) tests=0 ;;
    *) echo "gpu-check: unknown option $arg (use --no-install, --no-build, --no-tests)" >&2; exit 64 ;;
  esac
done
started=$(date +%s)
step() { echo; echo "== gpu-check: $* ($(( $(date +%s) - started )) s)"; }

step "machine"
node --version
echo "cores: $(nproc 2>/dev/null || echo '?')"
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else echo "nvidia-smi: not found (no NVIDIA driver on PATH)"; fi

if [ "$install" = 1 ]; then step "npm ci"; npm ci --no-audit --no-fund; fi

step "WebGPU adapter"
if [ "$(uname)" = Linux ]; then
  # Dawn reaches the GPU through Vulkan: the loader (libvulkan.so.1, Debian/Ubuntu package
  # libvulkan1) and the driver's ICD (the NVIDIA driver installs nvidia_icd.json)
  if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep libvulkan.so.1 >/dev/null; then
    echo "gpu-check: the Vulkan loader libvulkan.so.1 is not installed"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "gpu-check: installing it: apt-get install libvulkan1"
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends libvulkan1; } || echo "gpu-check: apt-get could not install libvulkan1"
    else
      echo "gpu-check: install it (Debian/Ubuntu: sudo apt-get install libvulkan1; RHEL: vulkan-loader)"
    fi
  fi
  icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
  echo "gpu-check: Vulkan ICDs: ${icds:-none}"
  if ! echo "$icds" | grep -qi nvidia; then
    echo "gpu-check: no NVIDIA Vulkan ICD (nvidia_icd.json): in a container, NVIDIA_DRIVER_CAPABILITIES must include graphics (or all)"
  fi
fi
# a software adapter must never stand in for the GPU: no SwiftShader here
unset VK_ADD_DRIVER_FILES
if ! node scripts/gpu-adapter.mjs; then
  echo "gpu-check: FAILED: no hardware WebGPU adapter on this machine (see above); nothing was measured." >&2
  exit 2
fi

if [ "$build" = 1 ]; then step "build"; npm run build; fi

if [ "$tests" = 1 ]; then
  step "WebGPU parity and kernel tests on the GPU"
  EDGETUNE_WEBGPU_REQUIRE_HARDWARE=1 npx vitest run --project node test/webgpu
fi

step "benchmark"
node bench/gpu.mjs
step "done"
