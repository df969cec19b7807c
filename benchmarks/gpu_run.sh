#!/usr/bin/env bash
# The whole pipeline from a clean copy on a GPU machine, and what the README's GPU paragraph reports:
# the run with every core's worth of stages at once, its stage times and critical path, MLflow's record
# of the GPU and the autocast and determinism checks (benchmarks/gpu_checks.py); then the whole pipeline
# again, forced, with fewer stages at once: the scaling, and whether the bytes (dvc.lock) stay the same.
# Run in a fresh clone whose `python` has the project's requirements and a CUDA build of torch:
#   LATENTLAB_DATA_MIRRORS=/path/to/datasets bash benchmarks/gpu_run.sh OUTDIR [JOBS_AGAIN] [DEADLINE_S]
# The second run is skipped when the first leaves less than its own time before DEADLINE_S (default 540).
set -u -o pipefail
out=${1:?usage: bash benchmarks/gpu_run.sh OUTDIR [JOBS_AGAIN] [DEADLINE_S]}
again=${2:-4}
deadline=${3:-540}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
now() { date +%s.%N; }
since() { python -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
t0=$(now)

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "cores: $(nproc)"; lscpu | grep -m1 'Model name'
  python -c 'import torch, numpy; print("torch", torch.__version__, "CUDA", torch.version.cuda, "numpy", numpy.__version__)'
} 2>&1 | tee "$out/machine.txt"

run() {  # run LABEL ARGS...: one `latentlab repro`, its log, stage times and critical path, and dvc.lock;
  local label=$1; shift  # its wall time is left in $wall
  local start; start=$(now)
  python -m latentlab repro "$@" 2>&1 | tee "$out/repro-$label.log"
  local rc=$?
  wall=$(since "$start")
  echo "latentlab repro $*: rc $rc, $wall s wall" | tee -a "$out/repro-$label.log"
  python benchmarks/stage_times.py --critical-path .dvc/tmp/latentlab-repro 2>&1 | tee -a "$out/repro-$label.log"
  cp dvc.lock "$out/dvc-$label.lock"
  return $rc
}

run all || echo "first run failed"
first=$wall
dvc status 2>&1 | tee "$out/status.txt"
# an operation without a deterministic CUDA kernel warns with its name (device.deterministic_cuda)
grep -h "does not have a deterministic implementation" .dvc/tmp/latentlab-repro/*.log | sort | uniq -c | tee "$out/nondeterministic.txt"
python benchmarks/gpu_checks.py 2>&1 | tee "$out/checks.md"

left=$(python -c "import sys; print(int(float(sys.argv[1]) - float(sys.argv[2])))" "$deadline" "$(since "$t0")")
if python -c "import sys; sys.exit(not float(sys.argv[1]) * 1.3 < float(sys.argv[2]))" "$first" "$left"; then
  run again -f -j "$again" || echo "second run failed"
  if cmp -s "$out/dvc-all.lock" "$out/dvc-again.lock"; then echo "dvc.lock: the same bytes"; else
    echo "dvc.lock differs:"; diff "$out/dvc-all.lock" "$out/dvc-again.lock" | head -40; fi 2>&1 | tee "$out/same-bytes.txt"
else
  echo "second run skipped: ${left} s left, the first took ${first} s" | tee "$out/same-bytes.txt"
fi
echo "gpu_run: $(since "$t0") s in all"
