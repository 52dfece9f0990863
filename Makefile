# dataprep: every set-up and check goes through these targets (README, CI and developers alike).
# `make help` lists them.

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CORPUS  ?= tests/data/demo
OUT     ?= demo-out

.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "maturin>=1.7,<2" click rich numpy pyarrow \
		pytest hypothesis regex tokenizers tiktoken transformers datasets ruff mypy
	touch $@

install: $(VENV)/.deps  ## build the Rust extension (release) into .venv with test dependencies
	$(BIN)/maturin develop --release -q

demo: install  ## train a tokenizer on the bundled corpus and print its summary
	mkdir -p $(OUT)
	$(BIN)/dataprep train-bpe $(CORPUS) --vocab-size 2000 --special-token '<|endoftext|>' --out $(OUT)/tokenizer.json

test: install  ## all tests: Rust (cargo test) and Python (pytest)
	cargo test --release -q
	$(BIN)/pytest -q

lint: install  ## rustfmt, clippy, ruff, mypy stubtest
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench

bench: install  ## benchmarks against the anchors (needs ../shared/corpora; see BENCHMARKS.md)
	$(BIN)/pip install -q rustbpe==0.1.0 psutil
	$(BIN)/python bench/bench_train_bpe.py
	$(BIN)/python bench/bench_mask.py

clean:  ## remove build outputs and the venv
	rm -rf target $(VENV) $(OUT)

.PHONY: help install demo test lint bench clean
