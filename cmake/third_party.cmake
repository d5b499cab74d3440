# Third-party libraries (nc_llama_jinja, nc_xgrammar) in sanitizer builds.
#
# Their code is not ours to fix, and instrumenting it costs the ASan build minutes of compile time
# (at -O0 with ASan, llama.cpp's Jinja engine and xgrammar take longer than most of the project's
# own code; docs/testing.md has the numbers). So a sanitizer build links them uninstrumented and
# optimised. AddressSanitizer still replaces the allocator process-wide, so every heap block they
# hand to the project, or the project hands to them, is checked wherever the project's own
# (instrumented) code touches it; what goes unchecked is their own reads and writes.
#
#   -DNC_THIRD_PARTY_FROM=<a Release build folder of the same tree>: link that build's
#     lib<target>.a (built first: `cmake --build <folder> --target nc_llama_jinja nc_xgrammar`;
#     the Makefile's asan-build does both), so the code is compiled once for both builds;
#   otherwise a sanitizer build compiles them itself, without sanitizers, at -O2 and without
#     debug information.
# Outside sanitizer builds neither applies.
set(NC_THIRD_PARTY_FROM "" CACHE PATH
    "Sanitizer builds: a Release build folder whose third-party static libraries are linked")

# Sets out_var to TRUE when `target` was defined here as an imported library from
# NC_THIRD_PARTY_FROM (the caller then adds its usage requirements and compiles nothing).
function(nc_third_party_import target out_var)
  set(${out_var} FALSE PARENT_SCOPE)
  if(NOT NC_SANITIZE OR NOT NC_THIRD_PARTY_FROM)
    return()
  endif()
  set(lib "${NC_THIRD_PARTY_FROM}/lib${target}.a")
  if(NOT EXISTS "${lib}")
    message(FATAL_ERROR "NC_THIRD_PARTY_FROM: ${lib} does not exist: build it first "
                        "(cmake --build ${NC_THIRD_PARTY_FROM} --target ${target})")
  endif()
  add_library(${target} STATIC IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${lib}")
  set(${out_var} TRUE PARENT_SCOPE)
endfunction()

# A third-party target compiled in this build: uninstrumented and optimised under sanitizers.
function(nc_third_party_unsanitized target)
  if(NC_SANITIZE)
    target_compile_options(${target} PRIVATE -fno-sanitize=all $<$<CONFIG:Debug>:-O2>
                                             $<$<CONFIG:Debug>:-g0>)
  endif()
endfunction()
