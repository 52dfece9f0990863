"""Export a trained GPT or BERT to a Hugging Face `transformers` directory.

GPT -> `GPT2LMHeadModel`; BERT -> `BertForPreTraining` (with the NSP head) or `BertForMaskedLM`.
`BertForMaskedLM.from_pretrained` loads either export (it drops the pooler and NSP classifier).
The directory also holds the tokenizer (`tokenizer.json` as trained plus `tokenizer_config.json`
and `special_tokens_map.json`), so `AutoTokenizer.from_pretrained(out)` gives a fast tokenizer.

The export is written to a temporary directory beside `out_dir` and renamed into place: a crash
leaves either the previous export or the new one, never a half-written directory.

`export_run(run_dir)` does it for a training run: the latest checkpoint, with the tokenizer and
special tokens of the run's shards (their manifest).

`transformers` is imported only when exporting; training does not need it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dataprep.shards import Manifest
from train.config import TrainConfig
from train.model import ModelConfig

SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "cls_token",
    "sep_token",
    "mask_token",
)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "exporting to Hugging Face format needs `transformers` (pip install 'transformers>=4.40')"
        ) from e
    return transformers


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def gpt_state_dict(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our GPT's state dict in `GPT2LMHeadModel` names. HF GPT-2 uses Conv1D, whose weight is
    (in, out): the transpose of nn.Linear's."""
    out = {
        "transformer.wte.weight": sd["wte.weight"],
        "transformer.wpe.weight": sd["wpe.weight"],
        "transformer.ln_f.weight": sd["ln_f.weight"],
        "transformer.ln_f.bias": sd["ln_f.bias"],
        "lm_head.weight": sd["wte.weight"],
    }
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"transformer.h.{i}."
        for a, b in (("ln_1", "ln_1"), ("ln_2", "ln_2")):
            out[f"{hf}{b}.weight"] = sd[f"{ours}{a}.weight"]
            out[f"{hf}{b}.bias"] = sd[f"{ours}{a}.bias"]
        for a, b in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("mlp.fc", "mlp.c_fc"),
            ("mlp.proj", "mlp.c_proj"),
        ):
            out[f"{hf}{b}.weight"] = sd[f"{ours}{a}.weight"].t()
            out[f"{hf}{b}.bias"] = sd[f"{ours}{a}.bias"]
    return out


def bert_state_dict(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our BERT's state dict in `BertForPreTraining` / `BertForMaskedLM` names (the fused qkv
    split into query, key, value)."""
    out = {
        "bert.embeddings.word_embeddings.weight": sd["word_emb.weight"],
        "bert.embeddings.position_embeddings.weight": sd["pos_emb.weight"],
        "bert.embeddings.token_type_embeddings.weight": sd["type_emb.weight"],
        "bert.embeddings.LayerNorm.weight": sd["emb_ln.weight"],
        "bert.embeddings.LayerNorm.bias": sd["emb_ln.bias"],
        "cls.predictions.transform.dense.weight": sd["mlm_dense.weight"],
        "cls.predictions.transform.dense.bias": sd["mlm_dense.bias"],
        "cls.predictions.transform.LayerNorm.weight": sd["mlm_ln.weight"],
        "cls.predictions.transform.LayerNorm.bias": sd["mlm_ln.bias"],
        "cls.predictions.bias": sd["mlm_bias"],
        "cls.predictions.decoder.weight": sd["word_emb.weight"],
        "cls.predictions.decoder.bias": sd["mlm_bias"],
    }
    for i in range(cfg.n_layer):
        ours, hf = f"layers.{i}.", f"bert.encoder.layer.{i}."
        for part in ("weight", "bias"):
            q, k, v = sd[f"{ours}qkv.{part}"].chunk(3, dim=0)
            out[f"{hf}attention.self.query.{part}"] = q
            out[f"{hf}attention.self.key.{part}"] = k
            out[f"{hf}attention.self.value.{part}"] = v
            for a, b in (
                ("attn_out", "attention.output.dense"),
                ("attn_ln", "attention.output.LayerNorm"),
                ("fc", "intermediate.dense"),
                ("out", "output.dense"),
                ("out_ln", "output.LayerNorm"),
            ):
                out[f"{hf}{b}.{part}"] = sd[f"{ours}{a}.{part}"]
    if cfg.nsp_head:
        for part in ("weight", "bias"):
            out[f"bert.pooler.dense.{part}"] = sd[f"pooler.{part}"]
            out[f"cls.seq_relationship.{part}"] = sd[f"nsp.{part}"]
    return out


def _special_token_ids(tokenizer_json: Path, special_tokens: dict[str, str]) -> dict[str, int]:
    from tokenizers import Tokenizer  # a dependency of transformers

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids = {}
    for key, token in special_tokens.items():
        if key not in SPECIAL_TOKEN_KEYS:
            raise ValueError(f"unknown special token key {key!r}; use {SPECIAL_TOKEN_KEYS}")
        tid = tok.token_to_id(token)
        if tid is None:
            raise ValueError(f"{key} {token!r} is not in {tokenizer_json}")
        ids[key] = tid
    return ids


def _hf_config(cfg: ModelConfig, ids: dict[str, int]) -> Any:
    transformers = _transformers()
    if cfg.pad_id is not None and ids.get("pad_token", cfg.pad_id) != cfg.pad_id:
        raise ValueError(f"pad_token id {ids['pad_token']} != ModelConfig.pad_id {cfg.pad_id}")
    pad_id = ids.get("pad_token", cfg.pad_id)
    if cfg.arch == "gpt":
        eos = ids.get("eos_token", ids.get("bos_token"))
        return transformers.GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.max_seq_len,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_inner=cfg.d_ff,
            activation_function="gelu_new",  # tanh approximation, as GPT.mlp
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            layer_norm_epsilon=cfg.layer_norm_eps,
            initializer_range=cfg.init_std,
            bos_token_id=ids.get("bos_token", eos),
            eos_token_id=eos,
            pad_token_id=pad_id,
            tie_word_embeddings=True,
            architectures=["GPT2LMHeadModel"],
        )
    return transformers.BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.d_ff,
        hidden_act="gelu",  # exact (erf) GELU
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_seq_len,
        type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.init_std,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
        architectures=["BertForPreTraining" if cfg.nsp_head else "BertForMaskedLM"],
    )


def _write_tokenizer(
    tokenizer_json: Path, out: Path, special_tokens: dict[str, str], max_seq_len: int
) -> None:
    shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_seq_len,
        "clean_up_tokenization_spaces": False,
        **special_tokens,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special_tokens, indent=2) + "\n")


def export_hf(
    model: nn.Module,
    cfg: ModelConfig,
    tokenizer_json: Path,
    out_dir: Path,
    *,
    special_tokens: dict[str, str],
) -> Path:
    """Writes `model` and its tokenizer as a `transformers` directory; returns `out_dir`.

    Args:
        model: A `GPT` or `BERT` from `train.model` (DDP / torch.compile wrappers are removed).
        cfg: Its config.
        tokenizer_json: The `tokenizer.json` the model was trained with.
        out_dir: The export directory; an existing one is replaced (atomically, by rename).
        special_tokens: Keys of `SPECIAL_TOKEN_KEYS` -> token strings, each in the tokenizer,
            e.g. `{"eos_token": "<|endoftext|>"}` (GPT) or `{"cls_token": "[CLS]", ...}` (BERT).
            GPT's bos/eos ids come from bos_token/eos_token (each defaults to the other).

    Returns:
        `out_dir`.

    >>> import dataprep, tempfile
    >>> from train.model import build_model, model_config
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("hello world. " * 200)
    >>> tok = d / "tok.json"
    >>> _ = dataprep.train_bpe(d / "a.txt", 300, out=tok, special_tokens=["<|endoftext|>"])
    >>> cfg = model_config("tiny", "gpt", 300, 64)
    >>> export_hf(build_model(cfg), cfg, tok, d / "hf",
    ...           special_tokens={"eos_token": "<|endoftext|>"}) == d / "hf"
    True
    """
    transformers = _transformers()
    tokenizer_json, out_dir = Path(tokenizer_json), Path(out_dir)
    ids = _special_token_ids(tokenizer_json, special_tokens)
    hf_config = _hf_config(cfg, ids)

    sd = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    if cfg.arch == "gpt":
        hf_sd, cls = gpt_state_dict(sd, cfg), transformers.GPT2LMHeadModel
    else:
        hf_sd = bert_state_dict(sd, cfg)
        cls = transformers.BertForPreTraining if cfg.nsp_head else transformers.BertForMaskedLM
    hf_sd = {k: v.contiguous() for k, v in hf_sd.items()}

    hf_model = cls(hf_config)
    expected = set(hf_model.state_dict())
    if expected != set(hf_sd):
        raise RuntimeError(
            f"state dict mapping mismatch: missing {sorted(expected - set(hf_sd))}, "
            f"unexpected {sorted(set(hf_sd) - expected)}"
        )
    with torch.no_grad():
        hf_model.load_state_dict(hf_sd, strict=True)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        hf_model.save_pretrained(tmp)  # safetensors; tied weights stored once
        _write_tokenizer(tokenizer_json, tmp, special_tokens, cfg.max_seq_len)
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def run_special_tokens(manifest: Manifest, tokenizer_json: Path) -> dict[str, str]:
    """The special tokens of a `dataprep tokenize` manifest, as `export_hf` wants them.

    CLM: eos_token, bos_token (when set) and pad_token from the manifest's tokenizer block; MLM:
    cls_token, sep_token, pad_token and mask_token (when found) from its `mlm` block.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    names = ("cls", "sep", "pad", "mask") if manifest.objective == "mlm" else ("eos", "bos", "pad")
    all_ids = manifest.special_token_ids()
    ids = {f"{name}_token": all_ids[name] for name in names}
    out = {}
    for key, tid in ids.items():
        if tid is not None:
            token = tok.id_to_token(tid)
            if token is None:
                raise ValueError(f"{key} id {tid} is not in {tokenizer_json}")
            out[key] = token
    return out


def export_run(run_dir: Path, out_dir: Path | None = None, *, ckpt: Path | None = None) -> Path:
    """Exports a training run's latest checkpoint (or `ckpt`) to `out_dir` (default RUN/hf).

    The tokenizer and its special tokens come from the manifest of the run's shards (the
    checkpoint's `--shards`): the tokenizer copy `dataprep tokenize` keeps there.
    """
    from train import checkpoint
    from train.mixture import parse_specs
    from train.model import build_model

    run_dir = Path(run_dir)
    ckpt = ckpt or checkpoint.latest(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to export")
    state = checkpoint.load(ckpt)
    cfg = ModelConfig.from_dict(state["model_config"])
    model = build_model(cfg)
    model.load_state_dict(state["model"])  # the trainer saves the unwrapped model's state
    # The config as saved: sections, or flat in runs saved before them (from_dict reads both).
    # A mixture's sets share the tokenizer (train.mixture.check_sets): the first one's is used.
    specs = TrainConfig.from_dict(state["config"], f"{ckpt}: config").data.shards
    shards = Path(parse_specs(specs)[0].path)
    manifest = Manifest.read(shards)
    tokenizer_json = manifest.tokenizer_path
    specials = run_special_tokens(manifest, tokenizer_json)
    return export_hf(model, cfg, tokenizer_json, out_dir or run_dir / "hf", special_tokens=specials)


def main(argv: list[str] | None = None) -> int:
    """`python -m train.export RUN [--out DIR] [--ckpt CKPT]`: a run's checkpoint to HF format."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m train.export",
        description="Export a training run's checkpoint as a transformers model + tokenizer.",
    )
    parser.add_argument("run", type=Path, help="run directory (--out of the training run)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default RUN/hf)")
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default the latest)")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run, args.out, ckpt=args.ckpt)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
