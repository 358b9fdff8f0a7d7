# The two commands of the README. Both set everything up on a fresh machine first.
.PHONY: run test setup

run:
	scripts/run

test:
	scripts/setup --test
	.venv/bin/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

setup:
	scripts/setup
