#!/usr/bin/env bash
# On the lent GPU machine (its image: torch 2.11.0+cu130, no vLLM, no network): the whole GPU
# session of issues 12, 13, 14 and 19, in steps, each writing its log to $OUT (the device tool's folder
# that comes back). Prepared here by bench/gpu/prepare.sh; bench/gpu/README.md has the calls.
#
#   bench/gpu/session.sh stage                 # copy the carried .gpu-carry/partNN into /root/gt-stage
#   bench/gpu/session.sh install               # reassemble, verify, install vLLM 0.24 + deps, build SmolLM2
#   bench/gpu/session.sh STEP...               # smoke copy wake shared big kv residue many (any order)
#
# Steps never stop the ones after them; each has its own time limit (STEP_TIMEOUT, seconds).
set -uo pipefail
cd "$(dirname "$0")/../.."
STAGE=/root/gt-stage PKG=/root/gt-pkg SITE=/root/gt-site STATE=/root/gt-state
OUT=${OUT:-/tmp/gt-out}
mkdir -p "$OUT"
export PYTHONPATH=$SITE PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
PY=python3
CHECKPOINT=$STATE/checkpoints/smollm2-135m-instruct

stage() {
  mkdir -p $STAGE
  cp -v .gpu-carry/part*/* $STAGE/
  ls -l $STAGE
}

install() {
  set -e
  ( cd $STAGE && sed 's|part[0-9]*/||' SHA256SUMS | sha256sum -c --quiet ) || { echo "parts missing or corrupt"; return 1; }
  rm -rf $PKG $SITE && mkdir -p $PKG $SITE
  cat $STAGE/blob.* | tar -x -C $PKG
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE $PKG/wheels/*.whl
  xz -dc $PKG/vllm.tar.xz | tar -x -C $SITE
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
  $PY -m gthreadd.demo_model --state-dir $STATE --models-dir $STATE/models.d
  set +e
}

smoke() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  df -h /dev/shm /root | cat
  $PY - <<'EOF'
import torch, vllm, engine.compat as c
from vllm.platforms import current_platform
print("vllm", vllm.__version__, "torch", torch.__version__, "platform", current_platform.device_name,
      "init_app_state from", c.init_app_state.__module__)
EOF
}

copy() { $PY bench/gpu_copy.py --checkpoint $CHECKPOINT --repeats 10; }
wake() { $PY bench/wake_latency.py --checkpoint $CHECKPOINT --cycles 3 --json $OUT/wake.json; }
shared() { $PY bench/gpu/shared_gpu.py --checkpoint $CHECKPOINT; }
big() { $PY bench/gpu/big_wake.py --state-dir $STATE --json $OUT/big.json; }
kv() { $PY bench/kv_prefix.py --checkpoint $CHECKPOINT --prefix-tokens 6000 --json $OUT/kv.json; }
residue() { $PY bench/gpu/sleep_residue.py --checkpoint $CHECKPOINT; }
many() { $PY bench/many_models.py --checkpoint $CHECKPOINT --models 10,30 --requests 40 --limit 0 --utilization 0.3 \
  --json $OUT/many.json; }

run_step() {
  local step=$1 started=$SECONDS
  echo "=== $step ($(date -u +%FT%TZ))"
  ( timeout --signal=INT --kill-after=20 "${STEP_TIMEOUT:-540}" bash -c "$(declare -f $step); $(declare -p STAGE PKG SITE STATE OUT PY CHECKPOINT); $step" ) \
    > >(tee "$OUT/$step.log") 2>&1
  echo "=== $step: exit $? after $((SECONDS - started)) s"
}

for step in "$@"; do
  case $step in
    stage|install|smoke|copy|wake|shared|big|kv|residue|many) run_step "$step" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
