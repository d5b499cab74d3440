# Sourced by the tools/gpu_*.sh scripts on the GPU machine (bash): the bundle that
# `tools/gpu_check.sh pack` made, unpacked with the environment its binaries need, and the raw
# files of a call packed for the device tool (it returns at most 8 files a call).

# gpu_unpack BUNDLE: unpacks into /tmp/nc (sets nc) and exports the libraries' path, the JIT's
# headers and cache, and the bundle's fixtures where it has them.
gpu_unpack() {
  nc=/tmp/nc
  rm -rf "$nc" && tar -C /tmp -xJf "$1" || return 1
  export LD_LIBRARY_PATH="$nc/lib:${LD_LIBRARY_PATH:-}"
  export NC_JIT_INCLUDE_DIR="$nc/jit" NC_JIT_CACHE="$nc/jit_cache"
  if [ -d "$nc/fixtures" ]; then export NC_FIXTURES_DIR_OVERRIDE="$nc/fixtures"; fi
}

# gpu_pack_out DIR NAME KEEP: every file directly in DIR but KEEP (the console log) into
# DIR/NAME_results.tar.xz, when $OUT is set (a device call) and NC_KEEP_FILES is not 1.
gpu_pack_out() {
  [ -n "${OUT:-}" ] && [ "${NC_KEEP_FILES:-0}" != 1 ] || return 0
  (cd "$1" && find . -maxdepth 1 -type f ! -name "$3" ! -name '*.tar.xz' -printf '%P\n' \
     | tar -cJf "$2_results.tar.xz" -T - --remove-files)
}
