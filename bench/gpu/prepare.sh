#!/usr/bin/env bash
# Here (a machine with PyPI): build what a GPU session carries to the lent machine, which can
# fetch nothing, in parts the device tool can send one call at a time (64 MiB a call, the working
# tree included). Writes .gpu-carry/part00 .. partNN (in .gitignore: never committed).
#
#   bench/gpu/prepare.sh [CACHE_DIR]      # default /tmp/gthread-gpu-cache
#
# Then, on one warm lent machine (bench/gpu/README.md): one `stage` call per part, then `install`
# and the measurement steps of bench/gpu/session.sh.
#
# vLLM 0.24.0 is the one release that runs on the image's torch 2.11.0+cu130. Its wheel (279 MB)
# is trimmed of what a Hopper GPU does not load: the FA2 library (FA3 serves sm_90, and vLLM's
# flash_attn_interface imports FA2 only if present), the Rust front-end binary, the headers and
# other-Python builds of the bundled DeepGEMM and the SM100 attention sources; what is left is
# packed with xz. Its dependencies are bench/gpu/requirements-vllm-0.24.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${1:-/tmp/gthread-gpu-cache}
PART_BYTES=${PART_BYTES:-60000000}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux_2_31_x86_64
           --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64)
PIP=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}")
mkdir -p "$CACHE/wheels"

if [ ! -s "$CACHE/vllm.tar.xz" ]; then
  "${PIP[@]}" -d "$CACHE" vllm==0.24.0
  rm -rf "$CACHE/tree" && mkdir "$CACHE/tree"
  unzip -q "$CACHE"/vllm-0.24.0-*.whl -d "$CACHE/tree"
  ( cd "$CACHE/tree/vllm"
    rm -f vllm_flash_attn/_vllm_fa2_C.abi3.so vllm-rs third_party/deep_gemm/_C.cpython-31[0134]-*.so
    rm -rf third_party/fmha_sm100 third_party/deep_gemm/include )
  tar -C "$CACHE/tree" -cf - vllm vllm-0.24.0.dist-info | xz -9 -T0 > "$CACHE/vllm.tar.xz.tmp"
  mv "$CACHE/vllm.tar.xz.tmp" "$CACHE/vllm.tar.xz"
fi
grep -v '^#' bench/gpu/requirements-vllm-0.24.txt | "${PIP[@]}" -d "$CACHE/wheels" -r /dev/stdin

rm -rf .gpu-carry && mkdir .gpu-carry
tar -C "$CACHE" -cf - vllm.tar.xz wheels | split -b "$PART_BYTES" -d - .gpu-carry/blob.
for blob in .gpu-carry/blob.*; do
  part=.gpu-carry/part${blob##*.}
  mkdir "$part" && mv "$blob" "$part/"
done
( cd .gpu-carry && sha256sum part*/blob.* > SHA256SUMS && cp SHA256SUMS part00/ )
ls -l .gpu-carry/part*/
echo "parts: $(ls -d .gpu-carry/part* | wc -l); carry one per call: bench/gpu/session.sh stage"
