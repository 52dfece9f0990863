"""`dataprep export-tokenizer`: `transformers.AutoTokenizer.from_pretrained` on the directory
encodes the demo corpus to our ids, decodes them back, and knows the special tokens' roles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import dataprep
from dataprep.cli import main
from dataprep.hf_tokenizer import write_transformers_dir

transformers = pytest.importorskip("transformers", reason="transformers comes with `make install`")


def test_same_ids_and_roles(
    specials_tokenizer: tuple[Path, dataprep.Tokenizer], demo_texts: list[str], tmp_path: Path
) -> None:
    path, tok = specials_tokenizer
    result = write_transformers_dir(path, tmp_path, model_max_length=8192, bos="[CLS]")
    assert result["roles"] == {
        "bos": "[CLS]",
        "eos": "<|endoftext|>",
        "pad": "[PAD]",
        "mask": "[MASK]",
        "cls": "[CLS]",
        "sep": "[SEP]",
    }
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(hf, transformers.PreTrainedTokenizerFast)
    for text in [t[:2000] for t in demo_texts[:50]]:
        ids = hf(text, add_special_tokens=True)["input_ids"]
        assert ids == tok.encode(text), text[:80]
        assert hf.decode(ids) == tok.decode(ids)
    ids = {t: i for t, i in tok.special_tokens}
    # A special token's text inside a document: transformers, HF tokenizers and
    # `Tokenizer.encode` match it as the special id; `split_special_tokens=True` (what
    # `dataprep tokenize` does with documents) encodes it as text.
    text = "Hello <|endoftext|> world"
    assert hf(text)["input_ids"] == tok.encode(text)
    assert ids["<|endoftext|>"] not in tok.encode(text, split_special_tokens=True)
    assert hf(text)["input_ids"] == [
        *tok.encode("Hello "),
        ids["<|endoftext|>"],
        *tok.encode(" world"),
    ]
    assert (hf.eos_token, hf.eos_token_id) == ("<|endoftext|>", ids["<|endoftext|>"])
    assert (hf.pad_token, hf.pad_token_id) == ("[PAD]", ids["[PAD]"])
    assert (hf.mask_token, hf.mask_token_id) == ("[MASK]", ids["[MASK]"])
    assert (hf.cls_token, hf.sep_token, hf.bos_token) == ("[CLS]", "[SEP]", "[CLS]")
    assert hf.unk_token is None and hf.model_max_length == 8192
    assert set(hf.all_special_tokens) == {t for t, _ in tok.special_tokens}
    # Padding a batch uses the pad id, as a trainer's collator does.
    batch = hf(["a b c", "a"], padding=True)["input_ids"]
    assert batch[1][-1] == ids["[PAD]"]


def test_tiktoken_input(trained: tuple[Path, dataprep.Tokenizer], tmp_path: Path) -> None:
    path, tok = trained
    ranks, _ = dataprep.tiktoken_paths(path)
    write_transformers_dir(ranks, tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "The tokenizer, exported: 12345 ünïcödé"
    assert hf(text)["input_ids"] == tok.encode(text)
    assert hf.eos_token == "<|endoftext|>" and hf.mask_token == "[MASK]"
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "model_max_length" not in config  # not given: not invented


def test_refusals(trained: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = trained
    with pytest.raises(ValueError, match=r"^--pad-token '<pad>': not a special token .*\[MASK\]"):
        write_transformers_dir(path, tmp_path / "a", pad="<pad>")
    with pytest.raises(ValueError, match=r"^--model-max-length 0: must be an integer from 1"):
        write_transformers_dir(path, tmp_path / "a", model_max_length=0)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"holds 'model.safetensors'"):
        write_transformers_dir(path, busy)


def test_cli(trained: tuple[Path, Any], tmp_path: Path) -> None:
    path, _tok = trained
    runner = CliRunner()
    out = tmp_path / "hf"
    ok = runner.invoke(
        main, ["export-tokenizer", str(path), "--out", str(out), "--model-max-length", "2048"]
    )
    assert ok.exit_code == 0, ok.output
    assert "<|endoftext|> (found by name)" in ok.output
    assert sorted(p.name for p in out.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert transformers.AutoTokenizer.from_pretrained(out).model_max_length == 2048
    for args, message in [
        (["--model-max-length", "big"], "error: --model-max-length 'big': not an integer"),
        (["--model-max-length", "-5"], "error: --model-max-length -5: must be an integer"),
        (["--sep-token", "[SEP]"], "error: --sep-token '[SEP]': not a special token"),
    ]:
        bad = runner.invoke(main, ["export-tokenizer", str(path), "--out", str(out), *args])
        assert bad.exit_code == 1 and message in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1, bad.output
