#!/usr/bin/env bash
# A compiler/linker launcher that records the CPU time of each step, so that build costs can be
# compared on a shared (loaded) machine, where wall times are not comparable (docs/testing.md):
#
#   NC_CPU_LOG=/tmp/cpu.log cmake -S . -B build-timed -G Ninja -DCMAKE_BUILD_TYPE=Release \
#     -DCMAKE_CXX_COMPILER_LAUNCHER=$PWD/tools/cpu_time_launcher.sh \
#     -DCMAKE_CXX_LINKER_LAUNCHER=$PWD/tools/cpu_time_launcher.sh
#   NC_CPU_LOG=/tmp/cpu.log cmake --build build-timed -j2
#
# Each step appends "user-seconds system-seconds wall-seconds output" to $NC_CPU_LOG (default
# /tmp/nc_cpu.log). Giving a launcher replaces ccache (CMakeLists.txt), so the build is cold.
set -euo pipefail
out="?"
prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
exec /usr/bin/time -f "%U %S %e $out" -a -o "${NC_CPU_LOG:-/tmp/nc_cpu.log}" "$@"
