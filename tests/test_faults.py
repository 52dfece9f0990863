"""Bad input that must end in a one-line error, never an abort or a silent result (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dataprep


def test_tokenizer_json_with_a_huge_id_is_refused(
    trained: tuple[Path, dataprep.Tokenizer], tmp_path: Path
) -> None:
    path, _ = trained
    doc = json.loads(path.read_text())
    token = next(iter(doc["model"]["vocab"]))
    for where, huge in (("vocab", 10**12), ("vocab", 2**32 + 5), ("added", 2**40)):
        bad = json.loads(json.dumps(doc))
        if where == "vocab":
            bad["model"]["vocab"][token] = huge
        else:
            bad["added_tokens"][0]["id"] = huge
        p = tmp_path / f"{where}-{huge}.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(
            ValueError,
            match=rf"^(model\.vocab\..+|added_tokens\[0\]\.id): {huge} is not a token id",
        ):
            dataprep.Tokenizer.from_file(str(p))


def test_mask_batch_refuses_ids_outside_the_vocabulary() -> None:
    ids = np.array([[5, 6, 7, 1000]], dtype=np.int64)
    with pytest.raises(
        ValueError, match="input_ids holds id 1000, outside the vocabulary of 100 ids"
    ):
        dataprep.mask_batch(ids, np.array([0], np.uint64), mask_token_id=3, vocab_size=100, seed=0)
    with pytest.raises(ValueError, match="mask id 300 is not below vocab_size 100"):
        dataprep.mask_batch(
            ids % 100, np.array([0], np.uint64), mask_token_id=300, vocab_size=100, seed=0
        )
