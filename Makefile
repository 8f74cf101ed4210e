# mplexctl: `make test` and `make demo` set everything up themselves (as root, Debian 12).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test unit kernel lint format header demo bench clean

setup:
	@scripts/setup.sh

test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

kernel: setup
	$(PY) -m pytest -q -m kernel $(PYTEST_ARGS)

lint: setup
	@$(PY) -m ruff check mplexctl tests
	@$(PY) -m ruff format --check mplexctl tests
	@$(PY) -m mypy
	@clang-format --dry-run --Werror bpf/mplex.c bpf/mplex_parse.h

format: setup
	$(PY) -m ruff format mplexctl tests
	$(PY) -m ruff check --fix mplexctl tests
	clang-format -i bpf/mplex.c bpf/mplex_parse.h

header: setup
	$(PY) -c "from mplexctl.compiler.header import render_common_header as r; \
		open('bpf/mplex_common.h', 'w').write(r())"

demo: setup
	@scripts/demo.sh

bench: setup
	@MPLEX_SETUP_BENCH=1 scripts/setup.sh
	$(PY) -m benchmarks

clean:
	rm -rf .venv build *.egg-info .mypy_cache .ruff_cache .pytest_cache
