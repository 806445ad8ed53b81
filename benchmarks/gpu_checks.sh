#!/usr/bin/env bash
# Every GPU measurement of the trainer in one run (<= 9 min on one H200), in priority order, each
# step under its own time limit and the whole run under GPU_CHECKS_BUDGET_S (default 510 s): a
# step that fails or runs out of time is logged and the next one runs; a step that no longer
# fits the budget is logged as skipped. From the project root:
#
#   bash benchmarks/gpu_checks.sh [OUTDIR]            # default OUTDIR: benchmarks/results
#   GPU_CHECKS_SMOKE=1 bash benchmarks/gpu_checks.sh /tmp/smoke   # CPU: tiny configs, 2 steps
#
# On an offline host with torch but not the rest of requirements.txt, put those wheels in .whl/
# first (on a machine with network: pip download -r requirements.txt --no-deps -d .whl); the
# script installs them into a temporary directory. Writes OUTDIR/gpu_checks_<gpu>_<date>.log
# (+ memory_*.json) and prints the tables of docs/measurements.md.
#
# Steps (time estimates from the 2026-11-26 H200 log, whose rates were 22-48 samples/s):
#  0. versions; wheels; DeepSpeed's CPU Adam build starts in the background        ~30 s
#  1. planner's 24 GiB choices of phase4 without offload (S-*, M-*), 5 at a time   ~60 s
#     (no timing: it overlaps the CPU Adam build, which every timed step waits for)
#  2. trainer vs plain step at the planner's choice for 139 GiB (global batch 32),
#     20 timed steps after 2 warm-up, L-S / S-S baseline with a profile              ~320 s
#  3. offload vs no-offload, L-L and L-S baseline at their 24 GiB plans            ~120 s
#  4. the offloaded 24 GiB plans (L-*), 2 at a time (22 B/param of host memory each) ~200 s
#  5. if time is left: L-B, compile, ZeRO stage 1 and other bucket settings
set -uo pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 DS_SKIP_CUDA_CHECK=${DS_SKIP_CUDA_CHECK:-1}
smoke=${GPU_CHECKS_SMOKE:-0}
budget=${GPU_CHECKS_BUDGET_S:-510}
[ "$smoke" = 1 ] && budget=${GPU_CHECKS_BUDGET_S:-1500}
t0=$(date +%s)

# wheels for an offline host (a no-op where the requirements import)
if ! python3 -c "import ray.tune, deepspeed, transformers, datasets" >/dev/null 2>&1 && ls .whl/*.whl >/dev/null 2>&1; then
  S=$(mktemp -d) && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$S" .whl/*.whl \
    && export PYTHONPATH="$S${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "$smoke" = 1 ]; then
  gpu=cpu-smoke
else
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | awk '{print $NF}')
fi
log="$out/gpu_checks_${gpu:-gpu}_$(date +%F).log"
: > "$log"
say() { echo "$*" | tee -a "$log"; }

step() {  # step MIN_S LIMIT_S NAME CMD...: run if MIN_S fit the budget, tee into the log, never abort
  local min=$1 limit=$2 name=$3
  shift 3
  local left=$(( budget - ($(date +%s) - t0) ))
  if [ "$left" -lt "$min" ]; then
    say "=== [$(( $(date +%s) - t0 )) s] $name: skipped (budget: $left s left, needs $min s)"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "=== [$(( $(date +%s) - t0 )) s] $name (limit $limit s): $*"
  timeout "$limit" "$@" 2>&1 | grep --line-buffered -v -e "real_accelerator.py" -e "^\s*warnings.warn" \
    -e "destroy_process_group" | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  say "=== $name: exit $rc$([ "$rc" = 124 ] && echo ' (time limit)')"
}

[ "$smoke" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | tail -1 | tee -a "$log"
python3 -c "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load()" > "$out/cpu_adam_build.log" 2>&1 &
adam=$!

tp=benchmarks/trainer_throughput.py
mc=benchmarks/memory_check.py
if [ "$smoke" = 1 ]; then
  # every kind of step once, tiny: the script's logic, not its numbers
  T=(--frames 2 --text-len 8 --steps 2 --warmup 1)
  step 60 300 "memory plans (list)" python3 $mc --grid phase4 --gpu-mem 24 --list
  wait "$adam"
  step 60 300 "T1-T1 baseline vs plain, planned, profile" python3 $tp --config T1-T1 --variant baseline \
    --plan-gpu-mem 139 --global-batch 4 "${T[@]}" --profile "$out/profile_T1-T1" --profile-steps 1 --profile-rows 5
  step 60 300 "T1-T1 foveated vs plain, planned" python3 $tp --config T1-T1 --variant foveated \
    --plan-gpu-mem 139 --global-batch 4 "${T[@]}"
  step 60 300 "offload T1-T1" python3 $tp --config T1-T1 --micro-batch 2 --grad-accum 2 --offload --only trainer "${T[@]}"
  step 60 300 "no-offload T1-T1" python3 $tp --config T1-T1 --micro-batch 2 --grad-accum 2 --only trainer "${T[@]}"
  step 60 300 "ZeRO override T1-T1" python3 $tp --config T1-T1 --micro-batch 2 --only trainer "${T[@]}" \
    --zero reduce_bucket_size=2e8 --zero overlap_comm=false
else
  step 60 150 "memory: 24 GiB plans without offload" python3 $mc --grid phase4 --gpu-mem 24 --global-batch 32 \
    --plans no-offload --parallel 5 --out "$out/memory_no_offload.json"
  say "=== [$(( $(date +%s) - t0 )) s] waiting for the CPU Adam build"
  wait "$adam"; tail -2 "$out/cpu_adam_build.log" | tee -a "$log"
  P=(--plan-gpu-mem 139 --global-batch 32 --steps 20 --warmup 2)
  step 40 90 "L-S baseline @139" python3 $tp --config L-S --variant baseline "${P[@]}" --profile "$out/profile_L-S"
  step 30 60 "S-S baseline @139" python3 $tp --config S-S --variant baseline "${P[@]}" --profile "$out/profile_S-S"
  step 50 100 "L-L baseline @139" python3 $tp --config L-L --variant baseline "${P[@]}"
  step 30 60 "M-S baseline @139" python3 $tp --config M-S --variant baseline "${P[@]}"
  step 40 90 "L-L foveated @139" python3 $tp --config L-L --variant foveated "${P[@]}"
  step 30 70 "L-S foveated @139" python3 $tp --config L-S --variant foveated "${P[@]}"
  step 30 60 "M-S foveated @139" python3 $tp --config M-S --variant foveated "${P[@]}"
  step 30 60 "S-S foveated @139" python3 $tp --config S-S --variant foveated "${P[@]}"
  O=(--config L-L --variant baseline --micro-batch 4 --grad-accum 8 --only trainer --steps 4 --warmup 1)
  step 40 80 "offload L-L baseline (24 GiB plan)" python3 $tp "${O[@]}" --offload
  step 30 60 "no-offload L-L baseline (same 4 x 8)" python3 $tp "${O[@]}"
  O=(--config L-S --variant baseline --micro-batch 16 --grad-accum 2 --only trainer --steps 4 --warmup 1)
  step 40 80 "offload L-S baseline (24 GiB plan)" python3 $tp "${O[@]}" --offload
  step 30 60 "no-offload L-S baseline (same 16 x 2)" python3 $tp "${O[@]}"
  step 90 230 "memory: 24 GiB plans with offload" python3 $mc --grid phase4 --gpu-mem 24 --global-batch 32 \
    --plans offload --parallel 2 --out "$out/memory_offload.json"
  step 40 90 "L-B baseline @139" python3 $tp --config L-B --variant baseline "${P[@]}"
  step 40 90 "L-B foveated @139" python3 $tp --config L-B --variant foveated "${P[@]}"
  step 60 120 "L-S baseline @139, compiled" python3 $tp --config L-S --variant baseline "${P[@]}" --compile
  # ZeRO stage 1 has no per-parameter gradient copies into buckets during backward; on CPU
  # (T2-T2) its profile matched the plain step's host time with the same losses (docs/measurements.md)
  step 30 60 "S-S baseline @139, trainer with ZeRO stage 1" python3 $tp --config S-S --variant baseline \
    "${P[@]}" --only trainer --zero stage=1
  step 40 60 "L-S baseline @139, trainer with 4x buckets, no overlap" python3 $tp --config L-S --variant baseline \
    "${P[@]}" --only trainer --zero reduce_bucket_size=2e8 --zero overlap_comm=false
fi
say "=== done in $(( $(date +%s) - t0 )) s"
python3 benchmarks/summarize_gpu_checks.py "$log" "$out"/memory_*.json 2>&1 | tee -a "$log"
