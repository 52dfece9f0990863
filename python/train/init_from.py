"""Continued pretraining: a new run's weights from a checkpoint of ours or a `transformers`
directory (`--init-from PATH`), the inverse of `train.export`.

PATH may be:
    a checkpoint      `RUN/checkpoints/step-N` (meta.json + state.pt, checksums verified)
    a run directory   `RUN` (its latest good checkpoint, as resume finds it)
    transformers      a directory with `config.json` of a `GPT2LMHeadModel`, `BertForMaskedLM`
                      or `BertForPreTraining` (what `--export-hf` writes, or a hub download)

Only the weights are taken: the optimizer, the step, the data position and the schedule start
afresh. Whatever does not fit is refused with one line naming PATH and the difference: another
architecture or size than `--model` and the shards make, another tokenizer (our checkpoints:
the SHA-256 in their data fingerprint; transformers: the vocabulary of its `tokenizer.json`), a
BERT without the NSP head that the run trains (`--no-nsp`). A longer position table than the
shards' `seq_len` is cut to it (named in the notes); dropout may differ.

One definition of the name mapping: the transformers tensors are copied *into the views* that
`export.gpt_state_dict` / `export.bert_state_dict` make of our parameters (a transpose, a
`chunk` of the fused qkv: writable views), so export and import cannot drift apart. Every
parameter is first set to NaN and checked afterwards, so a parameter the mapping misses is an
error naming it, never a silently random weight.

When the run directory holds a checkpoint, resume wins: the run continues from it and
`--init-from` is not read again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from train import checkpoint, export
from train.config import ConfigError
from train.model import ModelConfig

# transformers architectures we read, and the arch of ours each becomes.
HF_ARCHS = {"GPT2LMHeadModel": "gpt", "BertForMaskedLM": "bert", "BertForPreTraining": "bert"}

# Config fields compared, per arch (ours as `export._hf_config` writes them).
_HF_FIELDS = {
    "gpt": ("vocab_size", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
            "layer_norm_epsilon"),
    "bert": ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size", "hidden_act", "type_vocab_size", "layer_norm_eps"),
}  # fmt: skip
_HF_POSITIONS = {"gpt": "n_positions", "bert": "max_position_embeddings"}
_POSITION_KEYS = ("transformer.wpe.weight", "bert.embeddings.position_embeddings.weight")
# Fields of ModelConfig that do not change the weights.
_FREE_FIELDS = ("dropout",)


def init_weights(
    model: nn.Module, cfg: ModelConfig, path: Path, *, tokenizer_sha256: str, tokenizer_json: Path
) -> list[str]:
    """Loads the weights at `path` (see the module docstring) into `model` (built from `cfg`);
    returns notes for the run's banner. Raises ConfigError (one line) on what does not fit."""
    path = Path(path)
    if (path / checkpoint.META).is_file() or (path / "checkpoints").is_dir():
        return _from_checkpoint(model, cfg, path, tokenizer_sha256)
    if (path / "config.json").is_file():
        return _from_transformers(model, cfg, path, tokenizer_json)
    what = "does not exist" if not path.exists() else "holds none of them"
    raise ConfigError(
        f"--init-from {path}: expected a checkpoint (meta.json, state.pt), a run directory "
        f"(checkpoints/) or a transformers directory (config.json); it {what}"
    )


def _from_checkpoint(model: nn.Module, cfg: ModelConfig, path: Path, tok_sha: str) -> list[str]:
    notes: list[str] = []
    if (path / checkpoint.META).is_file():
        try:
            state = checkpoint.load(path)
        except checkpoint.CorruptCheckpoint as e:
            raise ConfigError(f"--init-from {e}") from None
    else:
        try:
            found = checkpoint.load_latest_good(path)
        except checkpoint.CorruptCheckpoint as e:
            raise ConfigError(f"--init-from {e}") from None
        if found is None:
            raise ConfigError(f"--init-from {path}: the run directory holds no checkpoint")
        path, state, skipped = found
        notes += skipped
    saved = state.get("model_config")
    if not isinstance(saved, dict):
        raise ConfigError(f"--init-from {path}: the checkpoint records no model configuration")
    ours = cfg.to_dict()
    diffs = [
        f"{k} {saved.get(k)} (this run: {v})"
        for k, v in ours.items()
        if k not in _FREE_FIELDS and saved.get(k) != v
    ]
    if diffs:
        raise ConfigError(
            f"--init-from {path}: saved for another model: {', '.join(diffs)} "
            "(the model comes from --model and the shards)"
        )
    theirs = (state.get("data") or {}).get("tokenizer_sha256")
    if theirs != tok_sha:
        raise ConfigError(
            f"--init-from {path}: trained with another tokenizer (sha256 {str(theirs)[:12]}…, "
            f"these shards' is {tok_sha[:12]}…)"
        )
    model.load_state_dict(state["model"])
    return [*notes, f"initialised from {path} (step {state.get('step')}): weights only"]


def _hf_vocab(tokenizer_json: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    vocab: dict[str, int] = Tokenizer.from_file(str(tokenizer_json)).get_vocab()
    return vocab


def _from_transformers(model: nn.Module, cfg: ModelConfig, path: Path, tok: Path) -> list[str]:
    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--init-from {path / 'config.json'}: unreadable ({e})") from None
    archs = raw.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch not in HF_ARCHS:
        raise ConfigError(
            f"--init-from {path}: architecture {arch} is not one we read ({', '.join(HF_ARCHS)})"
        )
    if HF_ARCHS[arch] != cfg.arch:
        raise ConfigError(
            f"--init-from {path}: a {arch} cannot start a {cfg.arch} run (the shards' objective)"
        )
    if cfg.arch == "bert" and cfg.nsp_head and arch != "BertForPreTraining":
        raise ConfigError(
            f"--init-from {path}: a {arch} has no NSP head and this run trains one "
            "(pass --no-nsp, or start from a BertForPreTraining)"
        )
    if raw.get("tie_word_embeddings", True) is not True:
        raise ConfigError(
            f"--init-from {path}: its output layer is not tied to the input embeddings "
            "(ours always is)"
        )
    notes: list[str] = []
    expected = export._hf_config(cfg, {}).to_dict()
    for d in (raw, expected):
        if cfg.arch == "gpt" and d.get("n_inner") is None:
            d["n_inner"] = 4 * d.get("n_embd", 0)  # GPT2Config's meaning of None
    diffs = [
        f"{k} {raw.get(k)} (this run: {expected[k]})"
        for k in _HF_FIELDS[cfg.arch]
        if raw.get(k) != expected[k]
    ]
    positions = _HF_POSITIONS[cfg.arch]
    if not isinstance(raw.get(positions), int) or raw[positions] < cfg.max_seq_len:
        diffs.append(f"{positions} {raw.get(positions)} (this run: at least {cfg.max_seq_len})")
    elif raw[positions] > cfg.max_seq_len:
        notes.append(
            f"--init-from {path}: its {raw[positions]} positions cut to the shards' "
            f"seq_len {cfg.max_seq_len}"
        )
    if diffs:
        raise ConfigError(
            f"--init-from {path}: another model than this run's: {', '.join(diffs)} "
            "(the model comes from --model and the shards)"
        )
    if (path / "tokenizer.json").is_file():
        if _hf_vocab(path / "tokenizer.json") != _hf_vocab(tok):
            raise ConfigError(
                f"--init-from {path}: its tokenizer.json has another vocabulary than the "
                f"shards' tokenizer ({tok})"
            )
    else:
        notes.append(f"--init-from {path}: no tokenizer.json there: the vocabulary is not checked")

    transformers = export._transformers()
    hf = getattr(transformers, arch).from_pretrained(path)
    hf_sd = {k: v.detach().float() for k, v in hf.state_dict().items()}
    load_hf_state_dict(model, cfg, hf_sd)
    if cfg.arch == "bert" and not cfg.nsp_head and arch == "BertForPreTraining":
        notes.append(f"--init-from {path}: its NSP head is not used (this run has none)")
    return [*notes, f"initialised from {arch} {path}: weights only"]


@torch.no_grad()
def load_hf_state_dict(model: nn.Module, cfg: ModelConfig, hf_sd: dict[str, Tensor]) -> None:
    """Copies a transformers state dict (export's names) into `model`, through the views that
    the export mapping makes of our parameters. Raises ConfigError naming a missing tensor or
    a parameter the mapping did not reach."""
    params = dict(export._unwrap(model).named_parameters())
    for p in params.values():
        p.fill_(float("nan"))
    ours = {k: v for k, v in export._unwrap(model).state_dict().items()}
    views: dict[str, Any] = (
        export.gpt_state_dict(ours, cfg) if cfg.arch == "gpt" else export.bert_state_dict(ours, cfg)
    )
    missing = sorted(set(views) - set(hf_sd))
    if missing:
        raise ConfigError(f"--init-from: the transformers weights lack {missing[:3]}")
    for key, view in views.items():
        src = hf_sd[key]
        if key in _POSITION_KEYS and src.shape[0] > view.shape[0]:
            src = src[: view.shape[0]]
        if src.shape != view.shape:
            raise ConfigError(
                f"--init-from: {key} has shape {tuple(src.shape)}, this run's {tuple(view.shape)}"
            )
        view.copy_(src)
    unset = [name for name, p in params.items() if torch.isnan(p).any()]
    if unset:
        raise ConfigError(f"--init-from: no transformers weight reached {unset[:3]}")


__all__ = ["HF_ARCHS", "init_weights", "load_hf_state_dict"]
