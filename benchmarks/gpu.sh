#!/usr/bin/env bash
# The GPU checks of issue 11 as one prepared command: the CUDA-marked tests, where a training
# step's time goes (benchmarks/gpu_step.py: the data pipeline, cudnn.benchmark), the default
# recipe and best-gpu over 3 seeds, and the paper's 10-seed optimizer comparison, with
# absolute times. Meant for a borrowed GPU machine with little time on it: the stages run in
# order of importance, each under its share of a deadline (DEADLINE seconds from the start,
# default 540), and every figure lands in OUT_DIR as soon as it exists, so a run cut short
# still reports what it finished. Nothing is installed: the machine's python3 must have torch
# (with CUDA), numpy, matplotlib, tqdm, Pillow and pytest; the package runs from src/.
#
#   bash benchmarks/gpu.sh [OUT_DIR]          # OUT_DIR: $OUT, else ./gpu-checks
#
# Data: FMNIST_DATA, else ./.devdata, else ../shared/data: a folder with fashion-mnist/ (the
# four .gz files and SHA256SUMS). A machine that cannot download gets a copy beside the code
# (.devdata/ is git-ignored: name it among the paths that travel with the tree):
#   mkdir -p .devdata && cp -r ../shared/data/fashion-mnist .devdata/
#
# Dry run of the flow on a CPU (tiny runs; the CUDA tests skip): GPU_CHECKS_DRY=1 bash ...
# Only some stages (a second call, say): STAGES="best-gpu compare" bash ... (names as in
# summary.txt: machine cuda-tests step default best-gpu compare).
# What comes back (at most 8 files): summary.txt (one line a stage: exit status, seconds),
# log.txt (everything printed), default.json, best-gpu.json, compare.json (the comparison's
# summary, or the cells it finished in time).
set -u
OUT_DIR=${1:-${OUT:-gpu-checks}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)  # before the cd below: a relative OUT_DIR is the caller's
if [ -n "${FMNIST_DATA:-}" ] && [ -d "$FMNIST_DATA" ]; then FMNIST_DATA=$(cd "$FMNIST_DATA" && pwd); fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
START=$(date +%s)
DEADLINE=${DEADLINE:-540}
if [ -z "${FMNIST_DATA:-}" ]; then
    if [ -d .devdata ]; then FMNIST_DATA=$PWD/.devdata; else FMNIST_DATA=$PWD/../shared/data; fi
fi
export FMNIST_DATA PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
WORK=$(mktemp -d)  # run folders and comparison cells: only their figures come back
trap 'rm -rf "$WORK"' EXIT

if [ -n "${GPU_CHECKS_DRY:-}" ]; then  # the same stages, tiny, on the CPU
    TRAIN_FLAGS="--device cpu --epochs 1 --train-limit 3000 --val-size 500 --threads 1"
    SEEDS=2
    STEP=(--device cpu --steps 2 --repeats 1)
    COMPARE=(--preset dissecting-adam --seeds 1 --steps 40 --eval-every 40 --device cpu
             --train-limit 2000 --jobs 2)
else
    if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        echo "gpu.sh: error: $PY sees no CUDA GPU (or no torch); on a CPU use GPU_CHECKS_DRY=1" >&2
        rmdir "$OUT_DIR" 2>/dev/null  # made above, still empty
        exit 1
    fi
    TRAIN_FLAGS="--device cuda --threads 4"
    SEEDS=3
    STEP=()
    COMPARE=(--preset dissecting-adam --jobs 8 --device cuda)
fi

# stage NAME SHARE COMMAND...: run COMMAND (output to log.txt) for at most SHARE seconds and
# never past the deadline; a line in summary.txt says how it ended
stage() {
    local name=$1 share=$2 left t0 rc
    shift 2
    case " ${STAGES:-$name} " in *" $name "*) ;; *) return ;; esac  # STAGES: run only these
    left=$((DEADLINE - ($(date +%s) - START)))
    if [ "$left" -lt 20 ]; then
        echo "$name: skipped, the deadline has passed" | tee -a "$OUT_DIR/summary.txt"
        return
    fi
    [ "$share" -gt "$left" ] && share=$left
    echo "=== $name (at most ${share} s)" >> "$OUT_DIR/log.txt"
    t0=$(date +%s)
    timeout --kill-after=10 "$share" "$@" >> "$OUT_DIR/log.txt" 2>&1
    rc=$?
    local how="exit $rc"
    [ "$rc" -eq 124 ] && how="cut off at its ${share}-s limit"
    echo "$name: $how, $(($(date +%s) - t0)) s" | tee -a "$OUT_DIR/summary.txt"
}

: > "$OUT_DIR/summary.txt"
: > "$OUT_DIR/log.txt"
stage machine 30 bash -c "nvidia-smi -L 2>&1 | head -4; $PY -c 'import sys, torch;
print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"-\")'"
stage cuda-tests 120 "$PY" -m pytest -p no:cacheprovider -q -m cuda tests/test_cuda.py
stage step 60 "$PY" benchmarks/gpu_step.py ${STEP[@]+"${STEP[@]}"}
stage default 150 "$PY" benchmarks/train.py --only default --seeds "$SEEDS" --no-baseline \
    --flags="$TRAIN_FLAGS" --json "$OUT_DIR/default.json"
stage best-gpu 240 "$PY" benchmarks/train.py --only best-gpu --seeds "$SEEDS" --jobs "$SEEDS" \
    --no-baseline --flags="$TRAIN_FLAGS" --json "$OUT_DIR/best-gpu.json"
stage compare "$DEADLINE" "$PY" -m fmnist compare "${COMPARE[@]}" --out "$WORK/compare" \
    --no-plots --quiet  # the rest of the time
# the comparison's summary, or the cells that finished before the deadline
[ -d "$WORK/compare" ] && "$PY" - "$WORK/compare" "$OUT_DIR/compare.json" <<'PY' 2>> "$OUT_DIR/log.txt"
import json, pathlib, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
if (src / "summary.json").exists():
    dst.write_text((src / "summary.json").read_text())
else:
    cells = {m.parent.name: {k: json.loads(m.read_text()).get(k) for k in
                             ("test_acc", "test_loss", "train_seconds", "device", "diverged")}
             for m in sorted(src.glob("runs/*/metrics.json"))}
    dst.write_text(json.dumps({"finished_cells": cells}, indent=2) + "\n")
    print(f"compare: {len(cells)} cells finished before the deadline", file=sys.stderr)
PY
echo "total: $(($(date +%s) - START)) s" | tee -a "$OUT_DIR/summary.txt"
