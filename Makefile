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

# torch: the pin of the `train` extra in pyproject.toml (a ~3 GB CUDA build from PyPI, ~2 min once).
$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "maturin>=1.7,<2" click rich numpy pyarrow \
		pytest hypothesis regex tokenizers tiktoken transformers datasets ruff mypy \
		"$$(grep -o 'torch==[0-9.]*' pyproject.toml)"
	touch $@

install: $(VENV)/.deps  ## build the Rust extension (release) into .venv with test dependencies
	$(BIN)/maturin develop --release -q

demo: install  ## bundled corpus -> tokenizer -> packed shards -> inspect -> a tiny GPT trained on them
	mkdir -p $(OUT)
	$(BIN)/dataprep train-bpe $(CORPUS) --vocab-size 2000 --special-token '<|endoftext|>' \
		--holdout-every 10 --out $(OUT)/tokenizer.json
	$(BIN)/dataprep tokenize $(CORPUS) --tokenizer $(OUT)/tokenizer.json --out $(OUT)/shards \
		--seq-len 512 --val-fraction 0.1
	$(BIN)/dataprep inspect $(OUT)/shards --rows 1
	$(BIN)/python -m train --shards $(OUT)/shards --model tiny --max-steps 100 --micro-batch 8 \
		--lr 3e-3 --warmup-steps 10 --eval-every 50 --log-every 10 --device cpu --out $(OUT)/run

test: install  ## all tests: Rust (cargo test) and Python (pytest)
	cargo test --release -q
	$(BIN)/pytest -q

lint: install  ## rustfmt, clippy, ruff, and the _core.pyi stub checked against the extension
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/python -m mypy.stubtest dataprep._core

bench: install  ## benchmarks against the anchors (needs ../shared/corpora; see BENCHMARKS.md)
	$(BIN)/pip install -q rustbpe==0.1.0 psutil datatrove spacy "xxhash<4"
	$(BIN)/python bench/bench_train_bpe.py --runs 3
	$(BIN)/python bench/bench_train_bpe.py --corpus kowiki --runs 3
	$(BIN)/python bench/bench_encode.py --runs 3
	$(BIN)/python bench/bench_tokenize.py
	$(BIN)/python bench/bench_dedup.py
	$(BIN)/python bench/bench_mask.py

faults: install  ## the long fault-injection run; its figures go in RELIABILITY.md
	$(BIN)/python bench/fault_injection.py --kills 20 --trainer-kills 3 --flips 300 --fuzz 500 \
		--limits 8 --json bench/fault_injection.json

docs: install  ## regenerate the README's option tables from the options schema
	$(BIN)/python -c 'import dataprep.options as o; o.rewrite_readme("README.md")'

clean:  ## remove build outputs and the venv
	rm -rf target $(VENV) $(OUT)

.PHONY: help install demo test lint bench faults docs clean
