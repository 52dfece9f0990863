"""dataprep: Rust-accelerated tokenizer training and data preparation for LM pretraining.

>>> import dataprep
>>> dataprep.split("gpt2", "Hello world!")
['Hello', ' world', '!']
"""

import importlib.metadata

from dataprep._core import DataprepError, Progress, Tokenizer, read_documents, split
from dataprep.bpe import tiktoken_encoding, tiktoken_paths, train_bpe
from dataprep.dedup import dedup
from dataprep.mask import build_sequences, encode_with_word_starts, mask_batch, split_sentences
from dataprep.shards import Manifest, ShardSet, input_ids, open_shard
from dataprep.tokenize import tokenize

__all__ = [
    "DataprepError",
    "Manifest",
    "Progress",
    "ShardSet",
    "Tokenizer",
    "build_sequences",
    "dedup",
    "encode_with_word_starts",
    "input_ids",
    "mask_batch",
    "open_shard",
    "read_documents",
    "split",
    "split_sentences",
    "tiktoken_encoding",
    "tiktoken_paths",
    "tokenize",
    "train_bpe",
]
# maturin copies rust/Cargo.toml's version (the one place it is set) into the package metadata.
__version__ = importlib.metadata.version("dataprep")
