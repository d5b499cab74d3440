#!/usr/bin/env bash
# Runs a GoogleTest binary as N shards at once (GTEST_TOTAL_SHARDS / GTEST_SHARD_INDEX: each test
# runs in exactly one shard), so that a mostly single-threaded suite uses every core; `make test`
# runs the Release and the ASan suites this way (docs/testing.md). Each shard's output is printed
# after it ends, whole, so that the shards' lines do not interleave. Exits non-zero if any shard
# failed (or found no tests to run because the binary is missing).
#
#   tools/gtest_shards.sh <shards> <binary> [gtest flags...]      e.g. 2 build/tests/nc_tests --gtest_brief=1
set -uo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 <shards (a positive integer)> <gtest binary> [args...]" >&2
  exit 2
fi
shards=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pids=()
for ((i = 0; i < shards; ++i)); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$@" >"$tmp/$i.log" 2>&1 &
  pids+=($!)
done
status=0
for ((i = 0; i < shards; ++i)); do
  wait "${pids[$i]}"
  rc=$?
  echo "---- shard $i of $shards: exit $rc"
  cat "$tmp/$i.log"
  [ $rc -ne 0 ] && status=1
done
exit $status
