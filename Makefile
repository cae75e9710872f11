# Thin wrappers; the scripts do the work.
.PHONY: all build run test bench clean format
all: build
build:
	scripts/setup.sh
run:
	scripts/demo.sh
test:
	scripts/test.sh
bench:
	scripts/bench.sh
format:
	clang-format -i $$(git ls-files '*.cc' '*.h')
clean:
	rm -rf build build-asan build-bench
