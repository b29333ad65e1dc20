#!/usr/bin/env bash
# The CUDA paths in one short command, for a lent GPU machine (the device tool's `run`):
#
#     bash benchmarks/device_check.sh          # about 2 minutes on one GPU
#
# Runs tests/engine/test_device_cuda.py (skipped on CI, which has no GPU), a profile and a
# `compare --jobs 2` of the sample MLP spec on CUDA, and bench_profile.py on CUDA (step times
# from synchronised clocks). Needs a python3 with a CUDA torch and mtldiag's runtime packages
# (typer, rich, pandas, matplotlib, pyyaml) and pytest with pytest-timeout; nothing is
# installed. Logs and the summaries go to $OUT (else /tmp/mtldiag-device).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/mtldiag-device}"
mkdir -p "$out"
work="$(mktemp -d)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
status=0

python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")' \
  2>&1 | tee "$out/device.log"

python3 -m pytest tests/engine/test_device_cuda.py -p no:cacheprovider -rs 2>&1 \
  | tee "$out/cuda_tests.log" || status=1

python3 -m mtldiag profile sample_configs/mlp.yaml --device cuda --steps 100 --every 5 \
  --out "$work/profile" -q 2>&1 | tee "$out/profile.log" || status=1
cp "$work/profile/summary.json" "$out/profile_summary.json" 2>/dev/null || status=1

python3 -m mtldiag compare sample_configs/mlp.yaml --device cuda --jobs 2 \
  -m ew,pcgrad,mgda@representation --seeds 0,1 --steps 60 --every 10 \
  --out "$work/compare" -q 2>&1 | tee "$out/compare.log" || status=1
cp "$work/compare/summary.json" "$out/compare_summary.json" 2>/dev/null || status=1

python3 benchmarks/bench_profile.py --device cuda 2>&1 | tee "$out/bench_profile.log" || status=1

echo "device_check: exit $status" | tee -a "$out/device.log"
exit "$status"
