"""Type stubs of the Rust extension (checked against it by `mypy.stubtest` in `make lint`)."""

from collections.abc import Iterable, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DataprepError",
    "Progress",
    "Tokenizer",
    "build_sequences",
    "check_options",
    "check_writable",
    "dedup",
    "dedup_banding",
    "discover",
    "encode_with_word_starts",
    "mask_batch",
    "options_schema",
    "read_documents",
    "split",
    "split_sentences",
    "tiktoken_paths",
    "tokenize",
    "tokenize_assemble",
    "tokenize_plan",
    "tokenize_unit",
    "train_bpe",
    "train_bpe_documents",
    "train_bpe_merge",
    "train_bpe_plan",
    "train_bpe_unit",
]

class DataprepError(Exception): ...

@final
class Progress:
    def __new__(cls) -> Progress: ...
    def snapshot(self) -> tuple[str, int, int, int, int]: ...
    def cancel(self) -> None: ...
    def notes(self) -> list[str]: ...

@final
class Tokenizer:
    @staticmethod
    def from_file(path: str, pattern: str | None = None) -> Tokenizer: ...
    def encode(
        self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False
    ) -> list[int]: ...
    def encode_batch(
        self,
        texts: Sequence[str],
        threads: int | None = None,
        add_special_tokens: bool = False,
        split_special_tokens: bool = False,
    ) -> list[npt.NDArray[np.uint32]]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...
    def token_bytes(self, id: int) -> bytes | None: ...
    def special_id(self, content: str) -> int | None: ...
    @property
    def special_tokens(self) -> list[tuple[str, int]]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def engine(self) -> str: ...
    @property
    def notes(self) -> list[str]: ...
    @property
    def template(self) -> tuple[list[int], list[int]] | None: ...
    @property
    def num_merges(self) -> int: ...
    @property
    def pattern(self) -> str: ...
    def split(self, text: str) -> list[str]: ...
    def save(self, path: str) -> None: ...
    def save_tiktoken(self, path: str, name: str = "dataprep") -> None: ...

def check_writable(path: str) -> None: ...
def discover(inputs: Sequence[str]) -> list[tuple[str, int]]: ...
def read_documents(
    inputs: Sequence[str], **options: Any
) -> tuple[list[dict[str, Any]], dict[str, int]]: ...
def split(pattern: str, text: str) -> list[str]: ...
def train_bpe(
    *, progress: Progress | None = None, listing: _Listing | None = None, **options: Any
) -> tuple[Tokenizer, dict[str, Any]]: ...
def train_bpe_plan(*, listing: _Listing | None = None, **options: Any) -> str: ...
def train_bpe_documents(
    *,
    unit_files: Sequence[str],
    progress: Progress | None = None,
    listing: _Listing | None = None,
    **options: Any,
) -> int: ...
def train_bpe_unit(
    *,
    unit_files: Sequence[str],
    first_index: int,
    unit_out: str,
    progress: Progress | None = None,
    listing: _Listing | None = None,
    **options: Any,
) -> str: ...
def train_bpe_merge(
    *,
    units: Sequence[tuple[str, str]],
    progress: Progress | None = None,
    listing: _Listing | None = None,
    **options: Any,
) -> tuple[Tokenizer, dict[str, Any]]: ...
def tiktoken_paths(out: str) -> tuple[str, str]: ...
def options_schema(command: str) -> str: ...
def check_options(command: str, **options: Any) -> None: ...

# `listing`: the inputs as `dataprep.storage` listed them, `(name, size, local copy or None)`.
_Listing = Sequence[tuple[str, int, str | None]]

def tokenize(
    *, progress: Progress | None = None, listing: _Listing | None = None, **options: Any
) -> str: ...
def tokenize_plan(*, listing: _Listing | None = None, **options: Any) -> str: ...
def tokenize_unit(
    *,
    unit_files: Sequence[str],
    unit_out: str,
    progress: Progress | None = None,
    listing: _Listing | None = None,
    **options: Any,
) -> str: ...
def tokenize_assemble(
    *,
    units: Iterable[tuple[str, str]],
    progress: Progress | None = None,
    listing: _Listing | None = None,
    **options: Any,
) -> str: ...
def dedup_banding(
    threshold: float = 0.8, num_perm: int = 128, verify: bool = True
) -> tuple[int, int, float]: ...
def dedup(*, progress: Progress | None = None, **options: Any) -> dict[str, Any]: ...
def mask_batch(
    input_ids: Any,
    sample_index: npt.NDArray[np.uint64],
    *,
    epoch: int,
    seed: int,
    mask_id: int,
    vocab_size: int,
    special_tokens_mask: npt.NDArray[np.uint8] | None = None,
    word_start: npt.NDArray[np.uint8] | None = None,
    special_ids: Sequence[int] = ...,
    probability: float = 0.15,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    strategy: str = "bernoulli",
    span_p: float = 0.2,
    max_span: int = 10,
    max_predictions: int | None = None,
    threads: int = 1,
) -> tuple[Any, Any]: ...
def encode_with_word_starts(
    tokenizer: Tokenizer, text: str
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]: ...
def split_sentences(text: str) -> list[str]: ...
def build_sequences(
    documents: Sequence[Sequence[tuple[Sequence[int], Sequence[int]]]],
    seq_len: int,
    *,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    layout: str = "full_sentence",
    seed: int = 0,
    short_seq_prob: float = 0.1,
) -> dict[str, Any]: ...
