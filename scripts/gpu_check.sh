#!/usr/bin/env bash
# scripts/gpu_check.sh [--dry-run] [OUT_DIR]
#
# Everything a run on one H100/H200 must do, unattended, in about 8 minutes (each stage has
# its own time limit, below): the gpu-marked tests (kernel correctness at real sizes in bf16:
# attention D=72/80/128, MoE 128 experts top-8, split-K decode, FP8 scaled matmuls, the delta
# rule when kernels/delta_rule.py and its tests exist, model parity on CUDA), MoE launch-config
# tuning for the real shapes, the kernel benchmark, and the step benchmark of both real
# architectures against transformers with random weights. Results land in OUT_DIR (default
# gpu-check-<UTC time>/) as JSON with device, date, commit and command, ready to commit under
# assets/benchmarks/ (the tuned MoE table goes to kernels/configs/):
#   gpu-check.json                      every stage: command, exit code, seconds, log file
#   gpu-tests.xml                       pytest's junit report of the gpu-marked tests
#   moe-configs/moe_E=128_N=768_device=<GPU>.json   also copied into kernels/configs/
#   kernels-bench.json                  python -m kernels.bench --json
#   step-qwen3-vl-30b-a3b-cuda.json     deskpilot bench step ... --compare transformers --json
#   step-uitars-1.5-7b-cuda.json
#   *.log                               each stage's output
# `--dry-run` runs nothing on a GPU: it lists every stage's command, checks that the offline
# wheels resolve, imports every module the stages run and collects the gpu tests (works on a
# CPU machine; tests/test_gpu_check.py runs it).
#
# Needs, preinstalled: an NVIDIA GPU with its driver; python3 with torch >= 2.11 (CUDA build),
# transformers >= 5.17, triton >= 3.6, torchvision and pillow (binary wheels that come with
# torch's images). No internet: everything else it needs is a pure-Python wheel in
# assets/wheels/ (pytest, pluggy, iniconfig, pygments, pytest-timeout, qwen-vl-utils, requests
# and its dependencies; ~2.3 MB), installed with `pip install --no-index`. Refill that folder
# on a machine with network access:
#   pip download --no-deps --only-binary=:all: --platform any --python-version 3.10 \
#     --implementation py --abi none -d assets/wheels -r assets/wheels/requirements.txt
# PYTHON=... picks the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0
OUT=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,35p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) if [ -n "$OUT" ]; then echo "gpu_check.sh: one OUT_DIR only" >&2; exit 2; fi
       OUT="$arg" ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
OUT="${OUT:-$ROOT/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QT_QPA_PLATFORM=offscreen PYTHONUNBUFFERED=1
WHEELS="$ROOT/assets/wheels"
# the test files that hold gpu-marked tests (the delta rule's included once it has them)
GPU_TESTS="$(grep -l 'mark.gpu' tests/test_*.py | tr '\n' ' ')"
DELTA_RULE="absent"
[ -f kernels/delta_rule.py ] && DELTA_RULE="present"

# stage name | time limit (s) | command
STAGES=(
  "gpu-tests|140|$PYTHON -m pytest -m gpu -q -p no:cacheprovider --timeout=140 --junitxml=$OUT/gpu-tests.xml $GPU_TESTS"
  "tune-moe|80|$PYTHON -m kernels.tune_moe --E 128 --H 2048 --I 768 --top-k 8 --tokens 1 8 64 512 2400 --grid fast --out $OUT/moe-configs"
  "kernels-bench|80|$PYTHON -m kernels.bench --json $OUT/kernels-bench.json"
  "step-qwen3-vl-30b-a3b|100|$PYTHON -m app.cli bench step --config qwen3-vl-30b-a3b --device cuda --compare transformers --json $OUT/step-qwen3-vl-30b-a3b-cuda.json"
  "step-uitars-1.5-7b|70|$PYTHON -m app.cli bench step --config uitars-1.5-7b --device cuda --compare transformers --json $OUT/step-uitars-1.5-7b-cuda.json"
)

install_wheels() {
  # offline, from the repo; already-satisfied requirements are left alone
  "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" -r "$WHEELS/requirements.txt"
}

if [ "$DRY_RUN" = 1 ]; then
  echo "gpu_check.sh --dry-run: python $PYTHON, output $OUT, delta rule $DELTA_RULE"
  echo "stage wheels: $PYTHON -m pip install --no-index --find-links $WHEELS -r $WHEELS/requirements.txt"
  for stage in "${STAGES[@]}"; do
    IFS='|' read -r name limit cmd <<<"$stage"
    echo "stage $name (limit ${limit}s): $cmd"
  done
  rc=0
  for whl in $(grep -v '^#' "$WHEELS/requirements.txt" | sed 's/[<>=;].*//' | tr -d ' '); do
    norm="$(echo "$whl" | tr '-' '_' | tr 'A-Z' 'a-z')"
    if ! ls "$WHEELS" | tr '-' '_' | tr 'A-Z' 'a-z' | grep -q "^${norm}_\?[0-9]"; then
      echo "MISSING wheel for $whl in $WHEELS" >&2; rc=1
    fi
  done
  "$PYTHON" -m pip install --dry-run --quiet --no-index --find-links "$WHEELS" \
    -r "$WHEELS/requirements.txt" || { echo "offline wheels do not resolve" >&2; rc=1; }
  "$PYTHON" - <<'EOF' || rc=1
import importlib

modules = ["torch", "triton", "transformers", "torchvision", "PIL", "qwen_vl_utils", "pytest",
           "pytest_timeout", "kernels", "kernels.attention", "kernels.decode", "kernels.moe",
           "kernels.rmsnorm", "kernels.ops", "kernels.bench", "kernels.tune_moe",
           "kernels.testing", "vlm", "vlm.bench", "vlm.fp8", "vlm.weights", "app.cli",
           "app.commands.bench"]
import os
if os.path.exists("kernels/delta_rule.py"):
    modules.append("kernels.delta_rule")
for name in modules:
    importlib.import_module(name)
    print(f"import {name}: ok")
EOF
  # collecting imports every gpu test module and checks the marker selection
  "$PYTHON" -m pytest -m gpu --collect-only -q -p no:cacheprovider $GPU_TESTS > "$OUT/collect.log" 2>&1 \
    || { echo "collecting the gpu tests failed:" >&2; tail -20 "$OUT/collect.log" >&2; rc=1; }
  echo "gpu tests collected: $(grep -c '::' "$OUT/collect.log") in $GPU_TESTS"
  [ $rc = 0 ] && echo "dry run ok"
  exit $rc
fi

"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu_check.sh: torch sees no CUDA GPU here (use --dry-run on a CPU machine)" >&2; exit 1; }
install_wheels || { echo "gpu_check.sh: installing $WHEELS failed" >&2; exit 1; }

START_ALL=$(date +%s)
RESULTS="$OUT/stages.jsonl"
: > "$RESULTS"
failed=0
for stage in "${STAGES[@]}"; do
  IFS='|' read -r name limit cmd <<<"$stage"
  echo "== $name (limit ${limit}s): $cmd"
  start=$(date +%s)
  # shellcheck disable=SC2086 - the command is a word list by design
  timeout --kill-after=10 "$limit" $cmd > "$OUT/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  tail -5 "$OUT/$name.log"
  echo "== $name: exit $rc after ${secs}s"
  [ $rc != 0 ] && failed=1
  if [ "$name" = tune-moe ] && [ $rc = 0 ]; then
    cp "$OUT"/moe-configs/*.json kernels/configs/  # the launcher (and the benches) use it
  fi
  printf '{"stage": "%s", "command": "%s", "exit_code": %d, "seconds": %d, "time_limit_s": %d, "log": "%s.log"}\n' \
    "$name" "$cmd" "$rc" "$secs" "$limit" "$name" >> "$RESULTS"
done

"$PYTHON" - "$OUT" "$DELTA_RULE" "$*" "$(( $(date +%s) - START_ALL ))" <<'EOF'
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import torch
import transformers
import triton

out, delta_rule, args, total = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
record = {
    "benchmark": "gpu_check",
    "command": f"scripts/gpu_check.sh {args}".strip(),
    "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    "commit": commit.strip() or "unknown",
    "device": torch.cuda.get_device_name(),
    "torch": torch.__version__, "triton": triton.__version__,
    "transformers": transformers.__version__,
    "delta_rule": delta_rule, "total_seconds": total,
    "stages": stages,
}
(out / "gpu-check.json").write_text(json.dumps(record, indent=2) + "\n")
print(f"wrote {out / 'gpu-check.json'}")
EOF
echo "gpu_check.sh: results in $OUT"
exit $failed
