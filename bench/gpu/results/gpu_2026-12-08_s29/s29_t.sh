#!/usr/bin/env bash
# Stop 29, tests call: main's whole GPU suite from the bundle (tools/gpu_check.sh run, no benches),
# which includes this stop's new tests (fp8 sparse mixed step, graphs at GQA group 7).
B=$1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
NC_BENCH=none bash tools/gpu_check.sh run "$B" 2>&1 | tail -40
