# The two commands of the README. Both set everything up first (idempotent).
.PHONY: setup setup-hospital study lint test test-fast bench

setup:
	./scripts/bootstrap.sh

# A hospital node without a container: the project only, no Node.js (docs/HOSPITAL_GUIDE.md).
setup-hospital:
	./scripts/bootstrap.sh --hospital

# The default study: breast cancer, 4 hospitals, DP-SGD, CKKS, local anvil chain, then the audit.
study: setup
	.venv/bin/python -m experiments.run $(ARGS)

# The habits CI keeps: ruff (lint + format), import-linter (layers point down), mypy (strict on fedledger/).
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports
	.venv/bin/mypy

# The whole test suite, slow integration tests included (what CI runs), after the lint.
test: lint
	.venv/bin/python -m pytest -q -ra $(ARGS)

test-fast: setup
	.venv/bin/python -m pytest -q -ra -m "not slow" $(ARGS)

bench: setup
	.venv/bin/python -m benchmarks.run_all
