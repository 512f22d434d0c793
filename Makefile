# The two commands of the README. Both set everything up first (idempotent).
.PHONY: setup study test test-fast bench

setup:
	./scripts/bootstrap.sh

# The default study: breast cancer, 4 hospitals, DP-SGD, CKKS, local anvil chain, then the audit.
study: setup
	.venv/bin/python -m experiments.run $(ARGS)

# The whole test suite, slow integration tests included (what CI runs).
test: setup
	.venv/bin/python -m pytest -q -ra $(ARGS)

test-fast: setup
	.venv/bin/python -m pytest -q -ra -m "not slow" $(ARGS)

bench: setup
	.venv/bin/python -m benchmarks.run_all
