"""dataprep: Rust-accelerated tokenizer training and data preparation for LM pretraining.

>>> import dataprep
>>> dataprep.split("gpt2", "Hello world!")
['Hello', ' world', '!']
"""

from dataprep._core import DataprepError, Progress, Tokenizer, read_documents, split
from dataprep.bpe import tiktoken_encoding, tiktoken_paths, train_bpe
from dataprep.dedup import dedup

__all__ = [
    "DataprepError",
    "Progress",
    "Tokenizer",
    "dedup",
    "read_documents",
    "split",
    "tiktoken_encoding",
    "tiktoken_paths",
    "train_bpe",
]
__version__ = "0.1.0"
