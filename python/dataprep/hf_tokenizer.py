"""A `transformers` tokenizer directory from one of our tokenizers (`dataprep export-tokenizer`).

Writes `tokenizer.json` (the Rust writer's, `Tokenizer.save`), `tokenizer_config.json`
(`tokenizer_class` `PreTrainedTokenizerFast`, the special tokens' roles, `model_max_length`,
`added_tokens_decoder`) and `special_tokens_map.json`, so that
`transformers.AutoTokenizer.from_pretrained(dir)` encodes to our ids and knows which special
token is BOS, EOS, PAD, ... A role is set when its option names a special token of the tokenizer,
or, without the option, when the tokenizer has a special token of a conventional name for it
(`ROLE_CANDIDATES`, the names `dataprep tokenize` looks for); the result says which.

>>> import dataprep, pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.txt").write_text("hello world. " * 200)
>>> _ = dataprep.train_bpe(d / "a.txt", 300, out=d / "tok.json",
...                        special_tokens=["<|endoftext|>", "<pad>"])
>>> write_transformers_dir(d / "tok.json", d / "hf", model_max_length=1024)["roles"]
{'eos': '<|endoftext|>', 'pad': '<pad>'}
>>> write_transformers_dir(d / "tok.json", d / "hf2", bos="<s>")
Traceback (most recent call last):
ValueError: --bos-token '<s>': not a special token of the tokenizer (it has: <|endoftext|>, <pad>)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dataprep import _core

PathLike = str | os.PathLike[str]

ROLES = ("bos", "eos", "unk", "pad", "mask", "cls", "sep")
# Without an option, a role goes to the first special token of these names the tokenizer has
# (`rust/src/options/tokenize.rs` looks for the same ones; `[SEP]` is sep here, not eos).
ROLE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "bos": ("<|begin_of_text|>", "<s>", "<bos>"),
    "eos": ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"),
    "unk": ("<unk>", "[UNK]", "<|unk|>"),
    "pad": ("<pad>", "[PAD]", "<|pad|>", "<|padding|>"),
    "mask": ("[MASK]", "<mask>"),
    "cls": ("[CLS]",),
    "sep": ("[SEP]",),
}
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MAX_MODEL_LENGTH = 1 << 30


def write_transformers_dir(
    tokenizer: PathLike,
    out: PathLike,
    *,
    pattern: str | None = None,
    model_max_length: int | None = None,
    **roles: str | None,
) -> dict[str, Any]:
    """Writes a `transformers` tokenizer directory (module docs) for `tokenizer` into `out`.

    Args:
        tokenizer: Our `tokenizer.json`, any byte-level BPE `tokenizer.json` we read, or a
            `.tiktoken` file (`pattern` as for `dataprep tokenize`).
        out: The directory (created if missing; it may hold only these three files).
        pattern: The split pattern of a `.tiktoken` file without its `.json` sidecar.
        model_max_length: `model_max_length` of the config (default: not set, which
            transformers reads as "no limit").
        **roles: `bos`, `eos`, `unk`, `pad`, `mask`, `cls`, `sep`: the special token of each
            role (must be a special token of the tokenizer).

    Returns:
        `{"roles": {role: token}, "files": [paths written]}`.

    Raises:
        ValueError: An unknown role, a token that is not special, a bad `model_max_length`,
            an output directory that holds other files (messages name the option or file).
    """
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r} (roles: {', '.join(ROLES)})")
    if model_max_length is not None and (
        isinstance(model_max_length, bool)
        or not isinstance(model_max_length, int)
        or not 1 <= model_max_length <= MAX_MODEL_LENGTH
    ):
        raise ValueError(
            f"--model-max-length {model_max_length!r}: must be an integer from 1 to "
            f"{MAX_MODEL_LENGTH}"
        )
    tok = _core.Tokenizer.from_file(os.fspath(tokenizer), pattern)
    specials = dict(tok.special_tokens)
    chosen: dict[str, str] = {}
    for role in ROLES:
        given = roles.get(role)
        if given is not None:
            if given not in specials:
                has = ", ".join(specials) or "none"
                raise ValueError(
                    f"--{role}-token {given!r}: not a special token of the tokenizer "
                    f"(it has: {has})"
                )
            chosen[role] = given
        else:
            found = next((c for c in ROLE_CANDIDATES[role] if c in specials), None)
            if found is not None:
                chosen[role] = found
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in out_dir.iterdir():
        if entry.name not in FILES:
            raise ValueError(
                f"--out {out_dir} holds {entry.name!r}, which is not part of a tokenizer "
                "directory: write into an empty or new directory"
            )
    added = {
        str(i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for content, i in sorted(specials.items(), key=lambda kv: kv[1])
    }
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        **{f"{role}_token": token for role, token in chosen.items()},
    }
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    special_map = {f"{role}_token": token for role, token in chosen.items()}
    paths = [out_dir / name for name in FILES]
    _write(paths[0], lambda tmp: tok.save(os.fspath(tmp)))
    for path, obj in zip(paths[1:], (config, special_map), strict=True):
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        _write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return {"roles": chosen, "files": paths}


def _write(path: Path, fill: Any) -> None:
    """Writes `path` through a temporary name (`fill(tmp)`), then renames it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


__all__ = ["ROLES", "ROLE_CANDIDATES", "write_transformers_dir"]
