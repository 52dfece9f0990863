"""The options schema: every option of `tokenize`, `dedup` and `train-bpe` either changes the
output of every objective it is accepted for, or is refused there with a message naming it (an
option that is silently ignored fails here: `--dedup` with `--objective mlm` once was). Also: the
CLI flags, the Python keywords and the README table come from the one schema."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import dataprep
from dataprep import _core
from dataprep.cli import main
from dataprep.options import COMMANDS, defaults, flag, properties, readme_with_tables
from dataprep.ray_engine import ENGINE_FLAGS

README = Path(__file__).parent.parent / "README.md"
WORDS = [f"w{i}" for i in range(400)]
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<pad>", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]

# Options that by design never change what is written: checked to leave the output equal.
SAME_OUTPUT = {
    "tokenize": {"threads"},
    "dedup": {"threads", "memory_mb", "temp_dir"},
    "train-bpe": {"threads"},
}
# Where the output goes, not what it is.
DESTINATION = {"out"}


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS[:60], k=rng.randint(3, 9))).capitalize() + "."


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small corpora, each one making a reading option matter."""
    d = tmp_path_factory.mktemp("options-corpora")
    rng = random.Random(11)
    docs = [" ".join(_sentence(rng) for _ in range(rng.randint(2, 12))) for _ in range(300)]
    docs += docs[:20]  # exact duplicates
    body = [" ".join(_sentence(rng) for _ in range(3)) for _ in range(len(docs))]
    (d / "jsonl").mkdir()
    (d / "jsonl" / "docs.jsonl").write_text(
        "".join(json.dumps({"text": t, "body": b}) + "\n" for t, b in zip(docs, body, strict=True))
    )
    (d / "other").mkdir()
    (d / "other" / "docs.jsonl").write_text("".join(json.dumps({"text": b}) + "\n" for b in body))
    (d / "wiki.txt").write_text(
        "".join(
            f'<doc id="{i}" title="T{i}">\nT{i}\n\n{t}\n</doc>\n' for i, t in enumerate(docs[:50])
        )
    )
    (d / "text.txt").write_text("\n\n".join(docs[:60]) + "\n")
    (d / "invalid.txt").write_bytes(
        b"\n\n".join(
            t.encode() + (b" \xff\xfe" if i % 3 == 0 else b"") for i, t in enumerate(docs[:60])
        )
    )
    pq.write_table(pa.table({"text": docs, "body": body}), d / "docs.parquet")
    return d


@pytest.fixture(scope="module")
def tokenizers(
    tmp_path_factory: pytest.TempPathFactory, corpora: dict[str, Path]
) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("options-tok")
    tok = d / "tok.json"
    dataprep.train_bpe(corpora / "jsonl", 500, out=tok, special_tokens=SPECIALS, holdout_every=0)
    other = d / "other.json"
    dataprep.train_bpe(
        corpora / "jsonl", 400, out=other, special_tokens=SPECIALS, holdout_every=0, tiktoken=False
    )
    # Ranks whose sidecar names the special tokens but no split pattern: --pattern needed.
    bare = d / "bare" / "tok.tiktoken"
    bare.parent.mkdir()
    shutil.copy(d / "tok.tiktoken", bare)
    sidecar = json.loads((d / "tok.tiktoken.json").read_text())
    del sidecar["pat_str"]
    (d / "bare" / "tok.tiktoken.json").write_text(json.dumps(sidecar))
    return {"tok": tok, "other": other, "bare": bare}


def digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


# option -> (extra base options, changed value); a dict value is per objective.
TOKENIZE: dict[str, tuple[dict[str, Any], Any]] = {
    "inputs": ({}, "@other"),
    "tokenizer": ({}, "@tok:other"),
    "seq_len": ({}, 32),
    "val_fraction": ({}, 0.3),
    "seed": ({"val_fraction": 0.3}, 7),
    "shard_size": ({}, "2KB"),
    "pad_token": ({}, {"clm": "[PAD]", "mlm": "<pad>"}),
    "dedup": ({}, "exact"),
    "dedup_threshold": ({"dedup": "near"}, 0.3),
    "pattern": ({"tokenizer": "@tok:bare", "pattern": "gpt2"}, "cl100k"),
    "format": ({"inputs": "@wiki.txt"}, "text"),
    "text_unit": ({"inputs": "@text.txt", "format": "text"}, "paragraph"),
    "jsonl_field": ({}, "body"),
    "parquet_column": ({"inputs": "@docs.parquet"}, "body"),
    "invalid_utf8": (
        {"inputs": "@invalid.txt", "format": "text", "text_unit": "paragraph"},
        "skip",
    ),
    "last_row": ({}, "drop"),
    "eos_token": ({}, "[SEP]"),
    "bos_token": ({}, "[CLS]"),
    "use_bos": ({}, False),
    "layout": ({}, "nsp"),
    "cls_token": ({}, "<|begin_of_text|>"),
    "sep_token": ({}, "<|endoftext|>"),
    "mask_token": ({}, "<pad>"),
    "nsp_block_docs": ({"layout": "nsp"}, 4),
    "short_seq_prob": ({"layout": "nsp"}, 0.9),
    "static_masking": ({}, True),
    "dupe_factor": ({"static_masking": True}, 2),
    "mask_probability": ({"static_masking": True}, 0.4),
    "mask_strategy": ({"static_masking": True}, "whole_word"),
    "replace_mask": ({"static_masking": True}, 0.5),
    "replace_random": ({"static_masking": True}, 0.2),
    "span_p": ({"static_masking": True, "mask_strategy": "span"}, 0.6),
    "max_span": ({"static_masking": True, "mask_strategy": "span"}, 2),
    "max_predictions": ({"static_masking": True, "mask_strategy": "fixed"}, 2),
    "threads": ({}, 1),
}


def resolve(value: Any, objective: str, corpora: Path, toks: dict[str, Path], key: str = "") -> Any:
    if key == "inputs":
        return [resolve(value, objective, corpora, toks)]
    if isinstance(value, dict):
        value = value[objective]
    if isinstance(value, str) and value.startswith("@tok:"):
        return str(toks[value[5:]])
    if isinstance(value, str) and value.startswith("@"):
        return str(corpora / value[1:])
    return value


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_every_tokenize_option_changes_the_output_or_is_refused(
    objective: str, corpora: Path, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    names = set(properties("tokenize")) - {"objective"} - DESTINATION
    missing = names - set(TOKENIZE)
    assert not missing, f"options without a scenario in this test: {sorted(missing)}"
    runs = 0
    for name in sorted(names):
        extra, value = TOKENIZE[name]
        base = {
            "inputs": [str(corpora / "jsonl")],
            "tokenizer": str(tokenizers["tok"]),
            "objective": objective,
            "seq_len": 64,
            "shard_size": "1MB",
        }
        base.update({k: resolve(v, objective, corpora, tokenizers, k) for k, v in extra.items()})
        changed = {**base, name: resolve(value, objective, corpora, tokenizers, name)}
        try:
            _core.check_options("tokenize", out="x", **changed)
        except ValueError as e:
            # Refused for this objective: the message names the option (or the option its
            # scenario needs, such as --static-masking for --dupe-factor).
            assert re.search(r"applies (to|with) ", str(e)), e
            props = properties("tokenize")
            assert any(flag(n, props[n]) in str(e) for n in [name, *extra]), e
            continue
        outs = []
        for k, opts in enumerate((base, changed)):
            out = tmp_path / f"{name}-{k}"
            m = dataprep.tokenize(opts.pop("inputs"), opts.pop("tokenizer"), out, **opts)
            outs.append((digest(out), m["config_hash"]))
        runs += 1
        if name in SAME_OUTPUT["tokenize"]:
            assert outs[0] == outs[1], f"{name} changed the output"
        else:
            assert outs[0][0] != outs[1][0], (
                f"{objective}: {name}={value!r} left the output as it was"
            )
            assert outs[0][1] != outs[1][1], f"{objective}: {name} is not in the config hash"
    assert runs >= 15


def test_mlm_dedup_drops_duplicates(
    corpora: Path, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    """The bug this schema fixed: `--dedup` with `--objective mlm` was silently ignored."""
    kw = {"objective": "mlm", "seq_len": 64}
    m = dataprep.tokenize(corpora / "jsonl", tokenizers["tok"], tmp_path / "a", dedup="exact", **kw)
    assert m["documents"]["skipped"]["exact_duplicate"] == 20
    assert m["config"]["dedup"] == "exact"


DEDUP: dict[str, tuple[dict[str, Any], Any]] = {
    "inputs": ({}, "@other.jsonl"),
    "mode": ({}, "exact"),
    "threshold": ({}, 0.4),
    "ngram": ({}, 2),
    "num_perm": ({}, 128),
    "bands": ({}, [4, 8]),
    "verify": ({}, True),
    "nfc": ({}, False),
    "whitespace": ({}, False),
    "lowercase": ({}, True),
    "seed": ({}, 2),
    "threads": ({}, 1),
    "memory_mb": ({}, 1),
    "temp_dir": ({}, "@tmp"),
    "format": ({}, "text"),
    "text_unit": ({"inputs": "@dups.txt", "format": "text"}, "paragraph"),
    "jsonl_field": ({}, "body"),
    "parquet_column": ({"inputs": "@dups.parquet"}, "body"),
    "invalid_utf8": (
        {"inputs": "@invalid.txt", "format": "text", "text_unit": "paragraph"},
        "skip",
    ),
}


@pytest.fixture(scope="module")
def dedup_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pairs that only one option tells apart: NFC/NFD, whitespace, case, and near duplicates
    with Jaccard spread around the threshold (so seeds, permutations and bands matter)."""
    d = tmp_path_factory.mktemp("dedup-corpus")
    rng = random.Random(3)
    text: list[str] = []
    for _ in range(60):
        a = rng.choices(WORDS, k=120)
        b = list(a)
        for i in rng.sample(range(120), rng.randint(8, 30)):
            b[i] = rng.choice(WORDS)
        text += [" ".join(a), " ".join(b)]
    text += ["Café au lait", unicodedata.normalize("NFD", "Café au lait")]
    text += ["two  spaces here", "two spaces here", "Upper Case", "upper case"]
    body = [" ".join(rng.choices(WORDS, k=40)) for _ in text]
    body[1] = body[0]
    (d / "docs.jsonl").write_text(
        "".join(json.dumps({"text": t, "body": b}) + "\n" for t, b in zip(text, body, strict=True))
    )
    (d / "other.jsonl").write_text("".join(json.dumps({"text": b}) + "\n" for b in body))
    (d / "dups.txt").write_text("\n\n".join(text[:20] + text[:5]) + "\n")
    pq.write_table(pa.table({"text": text, "body": body}), d / "dups.parquet")
    (d / "invalid.txt").write_bytes(b"\n\n".join([b"same \xff text"] * 3 + [b"x y z"]))
    (d / "tmp").mkdir()
    return d


def test_every_dedup_option_changes_the_result_or_is_refused(
    dedup_corpus: Path, tmp_path: Path
) -> None:
    names = set(properties("dedup")) - DESTINATION
    assert not names - set(DEDUP), f"options without a scenario: {sorted(names - set(DEDUP))}"

    def outcome(opts: dict[str, Any]) -> tuple[list[int], str]:
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        stats = dataprep.dedup(opts.pop("inputs"), out, **opts)
        return stats["removed"].tolist(), (out / "clusters.jsonl").read_text()

    for name in sorted(names):
        extra, value = DEDUP[name]
        # Unverified near dedup at a threshold inside the pairs' spread: every knob shows.
        base: dict[str, Any] = {
            "inputs": [str(dedup_corpus / "docs.jsonl")],
            "threshold": 0.6,
            "num_perm": 64,
            "verify": False,
        }
        base.update({k: resolve(v, "", dedup_corpus, {}, k) for k, v in extra.items()})
        changed = {**base, name: resolve(value, "", dedup_corpus, {}, name)}
        if name == "mode":
            for k in ("threshold", "num_perm", "verify"):  # near-only: refused in exact mode
                base.pop(k), changed.pop(k)
        a, b = outcome(dict(base)), outcome(dict(changed))
        if name in SAME_OUTPUT["dedup"]:
            assert a == b, f"{name} changed the result"
        else:
            assert a != b, f"{name}={value!r} left the result as it was"


def test_near_only_dedup_options_are_refused_in_exact_mode(dedup_corpus: Path) -> None:
    for name in ("threshold", "ngram", "num_perm", "bands", "verify", "seed"):
        value = DEDUP[name][1]
        with pytest.raises(ValueError, match=f"^{flag(name, {})} applies to --mode near only$"):
            dataprep.dedup(dedup_corpus / "docs.jsonl", mode="exact", **{name: value})


TRAIN_BPE: dict[str, tuple[dict[str, Any], Any]] = {
    "inputs": ({}, "@other"),
    "vocab_size": ({}, 280),
    "tiktoken": ({}, False),
    "pattern": ({}, "cl100k"),
    "special_tokens": ({}, ["<|endoftext|>", "<x>"]),
    "specials": ({}, "first"),
    "min_frequency": ({}, 1_000_000),
    "max_token_length": ({}, 1),
    "holdout_every": ({}, 2),
    "threads": ({}, 1),
    "format": ({}, "text"),
    # Word counts do not see document boundaries; the held-back documents do.
    "text_unit": ({"inputs": "@text.txt", "format": "text", "holdout_every": 2}, "paragraph"),
    "jsonl_field": ({}, "body"),
    "parquet_column": ({"inputs": "@docs.parquet"}, "body"),
    "invalid_utf8": (
        {"inputs": "@invalid.txt", "format": "text", "text_unit": "paragraph"},
        "skip",
    ),
}


def test_every_train_bpe_option_changes_the_tokenizer(corpora: Path, tmp_path: Path) -> None:
    names = set(properties("train-bpe")) - DESTINATION
    assert not names - set(TRAIN_BPE), (
        f"options without a scenario: {sorted(names - set(TRAIN_BPE))}"
    )

    def outcome(opts: dict[str, Any], k: int) -> dict[str, str]:
        out = tmp_path / f"{k}"
        out.mkdir()
        dataprep.train_bpe(opts.pop("inputs"), out=out / "tok.json", **opts)
        return digest(out)

    for n, name in enumerate(sorted(names)):
        extra, value = TRAIN_BPE[name]
        base: dict[str, Any] = {
            "inputs": [str(corpora / "jsonl")],
            "vocab_size": 320,
            "special_tokens": ["<|endoftext|>"],
            "holdout_every": 0,
        }
        base.update({k: resolve(v, "", corpora, {}, k) for k, v in extra.items()})
        changed = {**base, name: resolve(value, "", corpora, {}, name)}
        a, b = outcome(base, 2 * n), outcome(changed, 2 * n + 1)
        if name in SAME_OUTPUT["train-bpe"]:
            assert a == b, f"{name} changed the tokenizer"
        else:
            assert a != b, f"{name}={value!r} left the tokenizer as it was"


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_flags_python_keywords_and_readme_share_the_schema(command: str) -> None:
    cli = main.commands[command]
    params = {p.name: p for p in cli.params}
    readme = README.read_text()
    for name, prop in properties(command).items():
        assert name in params, f"{command}: {name} has no CLI parameter"
        assert prop.get("description"), f"{command}: {name} has no doc"
        if prop.get("x-argument"):
            continue
        opt = flag(name, prop)
        assert opt in params[name].opts, (opt, params[name].opts)
        assert f"| `{opt}" in readme, f"README: no table row for {command} {opt}"
    # The engine flags (`--engine`, `--address`, ...) are the one exception: where a command
    # runs, never what it computes (they never reach the core; README "Run on a cluster").
    engine = set(ENGINE_FLAGS)
    assert set(params) - engine == set(properties(command)), "CLI parameters outside the schema"
    for opt, _ in ENGINE_FLAGS.values():
        assert f"`{opt}" in readme, f"README: no row for the engine flag {opt}"
    assert f"<!-- options: {command} -->" in readme
    assert readme_with_tables(readme) == readme, "README option tables are stale: run `make docs`"


def test_unknown_and_bad_options_are_one_line_errors(corpora: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='unknown option "seqlen"'):
        dataprep.tokenize(corpora / "jsonl", "t.json", tmp_path / "o", seqlen=3)
    with pytest.raises(ValueError, match=r"^--seq-len: invalid value"):
        dataprep.tokenize(corpora / "jsonl", "t.json", tmp_path / "o", seq_len=-5)
    cases = [
        (["--seq-len", "0"], "--seq-len 0 is too short (at least 2"),
        (["--seq-len", "10000000"], "--seq-len must be at most 1048576 (got 10000000)"),
        (["--threads", "0"], "--threads must be between 1 and 4096 (got 0)"),
        (["--val-fraction", "nan"], "--val-fraction must be a finite number (got NaN)"),
        (["--shard-size", "lots"], "--shard-size must be a positive size"),
        (["--layout", "nsp"], "--layout applies to --objective mlm only"),
    ]
    for args, message in cases:
        r = CliRunner().invoke(
            main,
            [
                "tokenize",
                str(corpora / "jsonl"),
                "--tokenizer",
                "t.json",
                "--out",
                str(tmp_path / "o"),
                *args,
            ],
        )
        assert r.exit_code == 1, (args, r.output)
        assert r.output.startswith("error: ") and message in r.output, (args, r.output)
        assert r.output.count("\n") == 1, r.output
    assert not (tmp_path / "o").exists()


def test_defaults_match_the_documented_ones() -> None:
    d = defaults("tokenize")
    assert (d["seq_len"], d["shard_size"], d["objective"], d["use_bos"]) == (
        2048,
        "256MB",
        "clm",
        True,
    )
    assert defaults("train-bpe")["vocab_size"] == 32000
    assert defaults("dedup")["mode"] == "near"


def test_a_second_writer_is_refused_while_the_first_runs(
    corpora: Path, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    """Two `tokenize` runs on one --out: the second fails at once, naming the first."""
    import subprocess
    import sys
    import time

    big = tmp_path / "big"
    big.mkdir()
    text = (corpora / "jsonl" / "docs.jsonl").read_text()
    for k in range(40):
        (big / f"p{k}.jsonl").write_text(text)
    out = tmp_path / "out"
    args = ["tokenize", str(big), "--tokenizer", str(tokenizers["tok"]), "--seq-len", "64"]
    cmd = [sys.executable, "-m", "dataprep.cli", *args, "--out", str(out), "--threads", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = out / ".dataprep.lock"
    deadline = time.time() + 60
    while (
        not (lock.exists() and lock.read_text()) and first.poll() is None and time.time() < deadline
    ):
        time.sleep(0.01)
    try:
        r = CliRunner().invoke(main, [*args, "--out", str(out)])
        holder = f"pid {first.pid}"
        assert first.poll() is None, "the first run ended too soon for this test"
        assert r.exit_code == 1 and "is being written by dataprep tokenize" in r.output, r.output
        assert holder in r.output, r.output
    finally:
        first.kill()
        first.wait()
    # The first run died holding the lock: the next run takes it over and says so.
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "took over the lock of dataprep tokenize" in r.output, r.output


def test_outputs_inside_inputs_are_refused(
    corpora: Path, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    inputs = tmp_path / "corpus"
    shutil.copytree(corpora / "jsonl", inputs)
    with pytest.raises(ValueError, match="is inside the input"):
        dataprep.tokenize(inputs, tokenizers["tok"], inputs / "shards")
    with pytest.raises(ValueError, match="is inside the input"):
        dataprep.dedup(inputs, inputs / "deduped")
    with pytest.raises(ValueError, match="is inside --out"):
        dataprep.dedup(inputs / "docs.jsonl", inputs)
    assert not (inputs / "shards").exists() and not (inputs / "deduped").exists()


def test_train_bpe_creates_the_output_directory(corpora: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir" / "tok.json"
    _, stats = dataprep.train_bpe(corpora / "jsonl", 300, out=out, holdout_every=0)
    assert out.exists() and [Path(p).name for p in stats["outputs"]] == [
        "tok.json",
        "tok.tiktoken",
        "tok.tiktoken.json",
    ]
