# Two commands do all set-up on a fresh machine:
#   make run    install into .venv, then profile the shipped synthetic sample spec
#   make test   install into .venv (with the dev extra), then lint and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# LibMTL is a test-only reference; its metadata drags torchvision and another torch.
	$(BIN)/pip install -q --no-deps libmtl==1.1.5
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mtldiag profile sample_configs/synthetic.yaml

test: $(STAMP)
	$(BIN)/ruff check mtldiag tests benchmarks sample_configs
	$(BIN)/ruff format --check mtldiag tests benchmarks sample_configs
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_profile.py
	$(BIN)/python benchmarks/bench_methods.py
	$(BIN)/python benchmarks/bench_representation.py
	$(BIN)/python benchmarks/bench_gradnorm.py

clean:
	rm -rf $(VENV) runs .pytest_cache
