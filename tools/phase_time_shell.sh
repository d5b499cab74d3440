#!/bin/bash
# A shell for make that logs the cost of each recipe line (docs/testing.md): the end time, exit
# status, CPU-seconds (user and system of the line and every child it waited for: compilers,
# test processes, servers) and wall seconds, and the load average, one line per recipe line:
#
#   NC_PHASE_LOG=/tmp/phases.log make test SHELL=$PWD/tools/phase_time_shell.sh
#
# (a command-line SHELL passes to the sub-makes too, so each lane's steps are logged).
[ "$1" = "-c" ] && shift
log=${NC_PHASE_LOG:-/tmp/nc_phase.log}
t=$(mktemp)
s=$(date +%s.%N)
/usr/bin/time -f "%U %S %e" -o "$t" /bin/bash -c "$1"
rc=$?
printf '%s rc=%s user_sys_wall=%s load=%s :: %s\n' "$(date -u +%T)" "$rc" "$(tail -1 "$t")" "$(cut -d' ' -f1 /proc/loadavg)" "$(echo "$1" | tr '\n' ' ' | cut -c1-160)" >> "$log"
rm -f "$t"
exit $rc
