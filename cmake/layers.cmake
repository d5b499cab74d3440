# Layers the build enforces: one library per folder of src/, each declared with the layers it may
# use, and each compiled against an include view that holds only those layers' headers.
#
#   nc_layer(NAME <layer> [DIR <folder under src/>] [DEPS <layer>...] [LIBS <target>...]
#            [PUBLIC_HEADERS <file under include/nanocascade/>...] [EXECUTABLE <name>])
#
# builds target nc_<layer> (a static library, or the executable <name>) from src/<DIR>/*.cc
# (DIR defaults to NAME), found by a glob as files are added. Invariants:
#   - A layer's DEPS must be declared before it, so the declaration order is the layer order and
#     the graph has no cycle. Dependencies are PUBLIC: a layer sees every layer below it.
#   - Its include view, ${NC_LAYER_ROOT}/<layer>, holds symbolic links to the headers directly in
#     src/<DIR> (not in its subfolders: backend/ does not expose backend/cpu/ or backend/cuda/)
#     and to its PUBLIC_HEADERS, under the same relative paths ("kv/page_pool.h",
#     "nanocascade/engine.h"). No library has src/ or include/ on its include path, so a header
#     of a layer that is not below is "not found" at compile time.
#   - Every public header is claimed by exactly one layer (nc_check_public_headers()), and each
#     compiles with include/ alone on the path (nc_public_header_check target): public headers
#     include only public, standard and third-party headers.
# The views are rebuilt at each configure; adding or removing a header reruns the configure
# (CONFIGURE_DEPENDS). Links, not copies: the compiler reads the file in src/, and a change to it
# rebuilds its users as before.
set(NC_LAYER_ROOT "${CMAKE_BINARY_DIR}/layers")
set(NC_PUBLIC_HEADER_DIR "${PROJECT_SOURCE_DIR}/include/nanocascade")

# The include view of a layer (for targets outside the layer scheme, e.g. the CUDA kernels).
function(nc_layer_view layer out_var)
  set(${out_var} "${NC_LAYER_ROOT}/${layer}" PARENT_SCOPE)
endfunction()

# Fills the view directory `view` with links to `headers` (absolute paths) under `subdir`.
function(_nc_link_headers view subdir)
  foreach(header ${ARGN})
    get_filename_component(name "${header}" NAME)
    file(MAKE_DIRECTORY "${view}/${subdir}")
    file(CREATE_LINK "${header}" "${view}/${subdir}/${name}" SYMBOLIC)
  endforeach()
endfunction()

function(_nc_check_layer_args)
  if(NOT L_NAME)
    message(FATAL_ERROR "nc_layer: NAME is required")
  endif()
  if(L_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "nc_layer(${L_NAME}): unknown arguments '${L_UNPARSED_ARGUMENTS}'")
  endif()
  if(NOT IS_DIRECTORY "${PROJECT_SOURCE_DIR}/src/${L_DIR}")
    message(FATAL_ERROR "nc_layer(${L_NAME}): folder src/${L_DIR} does not exist")
  endif()
  foreach(dep ${L_DEPS})
    if(NOT TARGET nc_${dep})
      message(FATAL_ERROR "nc_layer(${L_NAME}): depends on '${dep}', which is not a layer declared "
                          "before it (declare layers bottom-up)")
    endif()
  endforeach()
  foreach(header ${L_PUBLIC_HEADERS})
    if(NOT EXISTS "${NC_PUBLIC_HEADER_DIR}/${header}")
      message(FATAL_ERROR "nc_layer(${L_NAME}): public header include/nanocascade/${header} "
                          "does not exist")
    endif()
  endforeach()
endfunction()

function(nc_layer)
  cmake_parse_arguments(PARSE_ARGV 0 L "" "NAME;DIR;EXECUTABLE" "DEPS;LIBS;PUBLIC_HEADERS")
  if(NOT L_DIR)
    set(L_DIR "${L_NAME}")
  endif()
  _nc_check_layer_args()
  set(folder "${PROJECT_SOURCE_DIR}/src/${L_DIR}")
  file(GLOB sources CONFIGURE_DEPENDS "${folder}/*.cc")
  file(GLOB headers CONFIGURE_DEPENDS "${folder}/*.h" "${folder}/*.cuh")
  list(TRANSFORM L_PUBLIC_HEADERS PREPEND "${NC_PUBLIC_HEADER_DIR}/" OUTPUT_VARIABLE public)

  nc_layer_view(${L_NAME} view)
  file(REMOVE_RECURSE "${view}")
  file(MAKE_DIRECTORY "${view}")
  _nc_link_headers("${view}" "${L_DIR}" ${headers})
  _nc_link_headers("${view}" nanocascade ${public})

  set_property(GLOBAL APPEND PROPERTY NC_CLAIMED_PUBLIC_HEADERS ${L_PUBLIC_HEADERS})

  set(deps ${L_DEPS})
  list(TRANSFORM deps PREPEND nc_)
  if(L_EXECUTABLE)
    add_executable(${L_EXECUTABLE} ${sources})
    target_include_directories(${L_EXECUTABLE} PRIVATE "${view}")
    target_link_libraries(${L_EXECUTABLE} PRIVATE ${deps} ${L_LIBS})
    set(target ${L_EXECUTABLE})
  elseif(sources)
    add_library(nc_${L_NAME} STATIC ${sources})
    target_include_directories(nc_${L_NAME} PUBLIC "${view}")
    target_link_libraries(nc_${L_NAME} PUBLIC ${deps} ${L_LIBS})
    set(target nc_${L_NAME})
  else()  # headers only
    add_library(nc_${L_NAME} INTERFACE)
    target_include_directories(nc_${L_NAME} INTERFACE "${view}")
    target_link_libraries(nc_${L_NAME} INTERFACE ${deps} ${L_LIBS})
    return()
  endif()
  target_compile_options(${target} PRIVATE ${NC_WARNINGS})
  if(NC_UNITY)
    # Unity batches (docs/testing.md): a layer's .cc files compile NC_UNITY_BATCH at a time as one
    # translation unit, so the headers they share are parsed and instantiated once per batch.
    # .cu files are not batched (CMake 3.25 batches C and C++ only).
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON
                                               UNITY_BUILD_BATCH_SIZE ${NC_UNITY_BATCH})
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC warns when a class uses a type of an anonymous namespace in a file that is not the
      # main file, as a batch's files are not; each such type is still used in one file only.
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-subobject-linkage>)
    endif()
  endif()
  if(NOT L_EXECUTABLE)
    set_property(GLOBAL APPEND PROPERTY NC_LAYER_LIBRARIES ${target})
  endif()
endfunction()

# After the last layer: every header in include/nanocascade/ belongs to exactly one layer, and a
# target (nc_public_header_check, built with everything) compiles each of them with include/ as
# the only project include path.
function(nc_check_public_headers)
  get_property(claimed GLOBAL PROPERTY NC_CLAIMED_PUBLIC_HEADERS)
  file(GLOB public RELATIVE "${NC_PUBLIC_HEADER_DIR}" CONFIGURE_DEPENDS
       "${NC_PUBLIC_HEADER_DIR}/*.h")
  set(check_sources)
  foreach(header ${public})
    list(FIND claimed ${header} at)
    if(at EQUAL -1)
      message(FATAL_ERROR "include/nanocascade/${header} belongs to no layer: add it to the "
                          "PUBLIC_HEADERS of the layer that implements it (CMakeLists.txt)")
    endif()
    list(REMOVE_AT claimed ${at})
    string(MAKE_C_IDENTIFIER "${header}" id)
    set(source "${CMAKE_BINARY_DIR}/public_header_check/${id}.cc")
    file(CONFIGURE OUTPUT "${source}" CONTENT "#include \"nanocascade/${header}\"\n")
    list(APPEND check_sources "${source}")
  endforeach()
  if(claimed)
    message(FATAL_ERROR "public headers claimed by more than one layer: ${claimed}")
  endif()
  add_library(nc_public_header_check OBJECT ${check_sources})
  target_include_directories(nc_public_header_check PRIVATE "${PROJECT_SOURCE_DIR}/include")
  target_compile_options(nc_public_header_check PRIVATE ${NC_WARNINGS})
endfunction()
