# The two commands a user needs (see README): `make run` and `make test`. Everything else is
# what they are built from.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
PROMPT ?= Write a short poem about the sea.
CMAKE_FLAGS ?=

.PHONY: setup build run test test-asan-lane test-release-lane asan-build cuda-compile-check bench clean format format-check

setup:
	./tools/setup.sh

build: setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/nanocascade generate --chat "$(PROMPT)"

# `make test` runs two lanes at once after the Release build (docs/testing.md): the ASan lane
# (build the ASan tree, run its suite) and the Release lane (the Release suite, the layering
# probes, the Python suites, which need only the Release binary). The ASan build is most of the
# CPU work; the Python suites spend most of their time waiting on the servers they start, so the
# two lanes fill the cores that either alone leaves idle. The ASan lane runs at a lower priority
# (nice) so that the Release lane's timing-sensitive tests keep their CPU. Make's --output-sync
# prints each step's output whole when it ends (a lane's steps in order), and -k lets the other
# lane finish when one fails: make's summary names the failed lane, and the failing step's output
# is printed just above it. The C++ suites run as $(TEST_SHARDS) concurrent shards
# (tools/gtest_shards.sh; each test runs once).
TEST_SHARDS ?= 2
ASAN_CMAKE = cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DNC_SANITIZE=ON \
  -DNC_THIRD_PARTY_FROM=$(abspath $(BUILD)) $(CMAKE_FLAGS)
test: build
	@echo "make test: the ASan and Release lanes run at once; each step's output is printed when it ends"
	@$(MAKE) --no-print-directory -k -j2 --output-sync=line test-asan-lane test-release-lane
	$(MAKE) --no-print-directory cuda-compile-check

# The ASan lane (after `make build`, which builds the third-party libraries it links).
test-asan-lane:
	$(ASAN_CMAKE) >/dev/null
	nice -n 10 cmake --build $(ASAN_BUILD) -j $(JOBS) --target nc_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  nice -n 10 tools/gtest_shards.sh $(TEST_SHARDS) ./$(ASAN_BUILD)/tests/nc_tests --gtest_brief=1 \
	  --gtest_filter='-*Slow*'

# The Release lane (after `make build`).
test-release-lane:
	tools/gtest_shards.sh $(TEST_SHARDS) ./$(BUILD)/tests/nc_tests --gtest_brief=1
	ctest --test-dir $(BUILD) -L layering --output-on-failure
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_openai_client.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_openai_api.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_tool_calls.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_tool_call_templates.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_structured_output.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_router.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_responses_api.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/server/test_anthropic_api.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_cli.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_tp_processes.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_memory_cli.py
	NANOCASCADE_BIN=$(BUILD)/nanocascade python3 tests/cli/test_chat_tmux.py
	python3 tests/tools/test_profile_report.py
	$(MAKE) --no-print-directory format-check

# The ASan build links the Release build's third-party libraries, uninstrumented and compiled once
# (cmake/third_party.cmake says why): they are built there first.
asan-build: setup
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS) --target nc_llama_jinja nc_xgrammar
	$(ASAN_CMAKE)
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

# Fails where a C++/CUDA file differs from clang-format's output. Skipped where clang-format is
# absent or not major version 14 (Debian bookworm's, which .clang-format was written against:
# other versions break lines differently).
format-check:
	@if clang-format --version 2>/dev/null | grep -q 'version 14\.'; then \
	  clang-format --dry-run --Werror $$(git ls-files '*.h' '*.cc' '*.cu' '*.cuh') && \
	  echo "format-check: clean"; \
	else echo "format-check: clang-format 14 not found, skipped"; fi

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
