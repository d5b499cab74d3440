#!/usr/bin/env bash
# Call A on an H200 (#14's H200 numbers and the suite), call H on anything else.
if nvidia-smi -L | grep -q H200; then exec bash build-gpu/s21_a.sh; else exec bash build-gpu/s21_h.sh; fi
