#!/usr/bin/env bash
# The GPU checks behind the README's performance tables, in priority order, each under its own
# time limit so one slow or failing step never costs the rest. Run from the project root on a
# CUDA machine with the requirements installed:
#
#   bash benchmarks/gpu_checks.sh [OUTDIR]          # logs and JSON lines land in OUTDIR (default gpu_checks/)
#
# 1. real-size configs train from random init through the trainer path (M-S, both variants);
# 2. throughput / MFU: this trainer vs a plain PyTorch + HF step (L-S with a profile, L-L);
# 3. measured vs planned memory of the planner's 24 GiB choices (benchmarks/memory_check.py);
# 4. ZeRO-Offload at global batch 32 (micro-batch 8 x 4 accumulation), then S-S and offload L-S.
# On the H200 (2026-11-26) steps 1-2 and offload L-L took ~290 s; results in the README.
# DeepSpeed's CPU Adam op (offload) is compiled in the background while step 1 runs.
set -uo pipefail
out=${1:-gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 DS_SKIP_CUDA_CHECK=${DS_SKIP_CUDA_CHECK:-1}
log="$out/gpu_checks.log"
t0=$(date +%s)

step() {  # step LIMIT_S NAME CMD...: run, tee into the log, never abort the script
  local limit=$1 name=$2
  shift 2
  echo "=== [$(( $(date +%s) - t0 )) s] $name: $*" | tee -a "$log"
  timeout "$limit" "$@" 2>&1 | grep -v -e "real_accelerator.py" -e "^\s*warnings.warn" | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc" | tee -a "$log"
  return "$rc"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
python3 -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | tail -1 | tee -a "$log"
python3 -c "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load()" \
  > "$out/cpu_adam_build.log" 2>&1 &

tp=benchmarks/trainer_throughput.py
# the first step doubles as the sanity check: if the trainer path fails here, the rest would too
step 90 "train M-S baseline" python3 $tp --config M-S --variant baseline --micro-batch 8 --steps 8 --warmup 2 \
  --only trainer || exit 1
step 90 "train M-S foveated" python3 $tp --config M-S --variant foveated --micro-batch 8 --steps 8 --warmup 2 --only trainer
wait  # the CPU Adam build: no compile competing with the host side of the timed steps below
tail -2 "$out/cpu_adam_build.log" | tee -a "$log"
# trainer vs plain, with a torch.profiler table of both paths after the timed steps (issue 5)
step 180 "L-S baseline" python3 $tp --config L-S --variant baseline --micro-batch 8 --profile "$out/profile_L-S"
step 150 "L-L baseline" python3 $tp --config L-L --variant baseline --micro-batch 8
# the planner's own choices for a 24 GiB card, measured (issue 4)
step 480 "memory check (24 GiB plans)" python3 benchmarks/memory_check.py --configs M-S,L-L,M-L,L-S,S-S \
  --variants baseline,foveated --gpu-mem 24 --global-batch 32
cp benchmarks/memory_check.json "$out/" 2>/dev/null
step 150 "offload L-L" python3 $tp --config L-L --variant baseline --micro-batch 8 --grad-accum 4 \
  --offload --only trainer --steps 3 --warmup 1
step 90 "S-S baseline" python3 $tp --config S-S --variant baseline --micro-batch 8
step 150 "offload L-S" python3 $tp --config L-S --variant baseline --micro-batch 8 --grad-accum 4 \
  --offload --only trainer --steps 3 --warmup 1
echo "=== done in $(( $(date +%s) - t0 )) s" | tee -a "$log"
