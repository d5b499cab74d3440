# The two commands a user needs (see README): `make run` and `make test`. Everything else is
# what they are built from.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
PROMPT ?= Write a short poem about the sea.
CMAKE_FLAGS ?=

.PHONY: setup build run test asan-build cuda-compile-check bench clean format

setup:
	./tools/setup.sh

build: setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/nanocascade generate --chat "$(PROMPT)"

# The C++ suites run as $(TEST_SHARDS) concurrent shards (tools/gtest_shards.sh; each test runs
# once): most tests are single-threaded, and CI has 2 cores (docs/testing.md).
TEST_SHARDS ?= 2
test: build asan-build
	tools/gtest_shards.sh $(TEST_SHARDS) ./$(BUILD)/tests/nc_tests --gtest_brief=1
	ctest --test-dir $(BUILD) -L layering --output-on-failure
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  tools/gtest_shards.sh $(TEST_SHARDS) ./$(ASAN_BUILD)/tests/nc_tests --gtest_brief=1 \
	  --gtest_filter='-*Slow*'
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_openai_client.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_openai_api.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_tool_calls.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_tool_call_templates.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_structured_output.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_router.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_cli.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_memory_cli.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_chat_tmux.py
	$(MAKE) cuda-compile-check

# The ASan build links the Release build's third-party libraries, uninstrumented and compiled once
# (cmake/third_party.cmake says why): they are built there first.
asan-build: setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target nc_llama_jinja nc_xgrammar
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNC_SANITIZE=ON \
	  -DNC_THIRD_PARTY_FROM=$(abspath $(BUILD)) $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target nc_tests

# The CUDA backend compiles (no GPU needed) wherever nvcc exists, so a break shows at once.
cuda-compile-check:
	@if command -v nvcc >/dev/null; then \
	  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DNC_CUDA=ON -DNC_TESTS=OFF $(CMAKE_FLAGS) && \
	  cmake --build build-cuda -j $(JOBS); \
	else echo "nvcc not found: CUDA compile check skipped"; fi

bench: setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DNC_BENCH=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
