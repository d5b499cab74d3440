# nc_xgrammar: xgrammar's C++ library (Apache-2.0), the grammar engine behind structured output
# (src/engine/grammar*.cc: JSON schemas, regexes, EBNF grammars and structural tags compiled
# against the model's vocabulary; per request a matcher that gives each step's token bitmask).
# Its files are not in the repository: tools/setup.sh unpacks its C++ sources from xgrammar's
# PyPI sdist into third_party/xgrammar (git-ignored). Built as xgrammar's own CMake builds its
# static library (every cpp/**/*.cc but the Python bindings, C++17, picojson and dlpack headers),
# without its -Werror/-flto and with its warnings silenced (third-party code). Consumers see the
# headers as system headers, and only nc_engine links it (privately).
set(NC_XGRAMMAR_DIR "${PROJECT_SOURCE_DIR}/third_party/xgrammar")
if(NOT EXISTS "${NC_XGRAMMAR_DIR}/include/xgrammar/xgrammar.h")
  message(FATAL_ERROR "xgrammar not found at ${NC_XGRAMMAR_DIR}: run tools/setup.sh (it unpacks "
                      "its C++ sources from xgrammar's PyPI sdist)")
endif()
# Sanitizer builds: uninstrumented, the Release build's copy where given (cmake/third_party.cmake).
nc_third_party_import(nc_xgrammar _imported)
if(_imported)
  target_include_directories(nc_xgrammar SYSTEM INTERFACE "${NC_XGRAMMAR_DIR}/include"
                             "${NC_XGRAMMAR_DIR}/3rdparty/picojson"
                             "${NC_XGRAMMAR_DIR}/3rdparty/dlpack/include")
  target_compile_definitions(nc_xgrammar INTERFACE XGRAMMAR_ENABLE_CPPTRACE=0)
  target_link_libraries(nc_xgrammar INTERFACE Threads::Threads)
  return()
endif()
file(GLOB_RECURSE _nc_xgrammar_sources CONFIGURE_DEPENDS "${NC_XGRAMMAR_DIR}/cpp/*.cc")
list(FILTER _nc_xgrammar_sources EXCLUDE REGEX "/cpp/tvm_ffi/.*\\.cc$")
add_library(nc_xgrammar STATIC ${_nc_xgrammar_sources})
set_target_properties(nc_xgrammar PROPERTIES CXX_STANDARD 17 POSITION_INDEPENDENT_CODE ON)
target_include_directories(nc_xgrammar SYSTEM PUBLIC "${NC_XGRAMMAR_DIR}/include"
                           "${NC_XGRAMMAR_DIR}/3rdparty/picojson"
                           "${NC_XGRAMMAR_DIR}/3rdparty/dlpack/include")
target_compile_definitions(nc_xgrammar PUBLIC XGRAMMAR_ENABLE_CPPTRACE=0)
# Optimised even in Debug/ASan builds: grammar compilation of a schema takes milliseconds, not
# seconds, and the suite stays fast.
target_compile_options(nc_xgrammar PRIVATE -w $<$<CONFIG:Debug>:-O2>)
target_link_libraries(nc_xgrammar PUBLIC Threads::Threads)
nc_third_party_unsanitized(nc_xgrammar)
