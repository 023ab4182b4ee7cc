#!/usr/bin/env bash
# Before/after on one GPU machine, in one command: .bench/before holds an older commit, the checkout
# the code under test. Prepare here, then run on the device (carry .whl and .bench):
#   mkdir -p .bench/before && git archive REV harness benchmarks tests suites configs | tar -x -C .bench/before
#   cp PATH/KorQuAD_v1.0_dev.json .bench/
#   benchmarks/before_after.sh decode|eval|choice  # after the wheels (../shared/gpu/wheels.sh) are in .whl
#     (choice: harness's rows of both, then the checkout's base-column timeline, `gpu.py choice --timeline`)
#   benchmarks/before_after.sh kernels         # the GPU kernel tests of the checkout
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
here=$PWD; data=$here/.bench/KorQuAD_v1.0_dev.json
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
PYTHONPATH=/tmp/site:$here python3 -c "import torch, transformers, peft, bitsandbytes, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bnb', bitsandbytes.__version__, 'triton', triton.__version__)" 2>&1 | tail -1
run() {  # run LABEL DIR ARGS...
  local label=$1 dir=$2; shift 2
  echo "=== $label: gpu.py $*"
  mkdir -p "$OUT/$label" /tmp/hb-shared /tmp/hb-$label
  # one model and one adapter for both versions: built by the first run, linked into the next
  for d in llama2-7b-shape random-adapter; do [ -e /tmp/hb-shared/$d ] && ln -sfn /tmp/hb-shared/$d /tmp/hb-$label/$d; done
  (cd "$dir" && OUT="$OUT/$label" PYTHONPATH=/tmp/site:$dir HF_HUB_OFFLINE=1 python3 benchmarks/gpu.py "$@" --work /tmp/hb-$label > "$OUT/$label/stdout.txt" 2> "$OUT/$label/stderr.txt"; echo "rc=$?") 
  for d in llama2-7b-shape random-adapter; do
    if [ -d /tmp/hb-$label/$d ] && [ ! -L /tmp/hb-$label/$d ] && [ ! -e /tmp/hb-shared/$d ]; then
      mv /tmp/hb-$label/$d /tmp/hb-shared/$d && ln -s /tmp/hb-shared/$d /tmp/hb-$label/$d; fi
  done
  tail -40 "$OUT/$label/stdout.txt"
}
case "$1" in
  decode)
    run before-decode "$here/.bench/before" decode --korquad "$data"
    run after-decode "$here" decode --korquad "$data" ;;
  eval)
    run before-eval "$here/.bench/before" eval --questions first --no-peers --verify 4 --korquad "$data"
    run after-eval "$here" eval --questions first --no-peers --verify 4 --korquad "$data" ;;
  choice)
    run before-choice "$here/.bench/before" choice --no-peers --verify 0 --korquad "$data"
    run after-choice "$here" choice --no-peers --verify 0 --korquad "$data"
    run after-timeline "$here" choice --timeline --korquad "$data" ;;
  kernels)
    cd "$here" && PYTHONPATH=/tmp/site:$here python3 -m pytest -q -p no:cacheprovider tests/generate/test_nf4_gemv.py tests/generate/test_decode_attention.py tests/generate/test_lora_kernels.py tests/eval/test_fast_engine.py tests/generate/test_prefill_chunks.py 2>&1 | tail -15 ;;
esac
