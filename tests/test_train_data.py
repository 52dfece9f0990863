"""train.data: shard reading, global order, step plan and the micro-batches it feeds the model."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dataprep
from train.data import (
    FILLER,
    IGNORE_INDEX,
    GlobalOrder,
    MaskingConfig,
    MicroBatches,
    ShardSet,
    StepPlan,
    iter_steps,
    make_eval_loader,
    make_loader,
    steps_per_epoch,
)

SEQ_LEN = 64


@pytest.fixture(scope="module")
def tok_path(specials_tokenizer: tuple[Path, dataprep.Tokenizer]) -> Path:
    return specials_tokenizer[0]


def _shards(tmp_path_factory: pytest.TempPathFactory, demo: Path, tok: Path, **kw: Any) -> Path:
    out = tmp_path_factory.mktemp("shards")
    dataprep.tokenize(
        demo, tok, out, seq_len=SEQ_LEN, val_fraction=0.1, threads=1, shard_size="12KB", **kw
    )
    return out


@pytest.fixture(scope="module")
def clm_dir(tmp_path_factory, demo_corpus, tok_path) -> Path:
    return _shards(tmp_path_factory, demo_corpus, tok_path)


@pytest.fixture(scope="module")
def fs_dir(tmp_path_factory, demo_corpus, tok_path) -> Path:
    return _shards(tmp_path_factory, demo_corpus, tok_path, objective="mlm")


@pytest.fixture(scope="module")
def nsp_dir(tmp_path_factory, demo_corpus, tok_path) -> Path:
    return _shards(
        tmp_path_factory, demo_corpus, tok_path, objective="mlm", layout="nsp", nsp_block_docs=8
    )


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory, demo_corpus, tok_path) -> Path:
    return _shards(
        tmp_path_factory,
        demo_corpus,
        tok_path,
        objective="mlm",
        layout="nsp",
        nsp_block_docs=8,
        static_masking=True,
        dupe_factor=2,
    )


def raw(directory: Path, split: str = "train") -> dict[str, Any]:
    """The split's columns read independently of train.data: shards concatenated in order."""
    manifest = dataprep.Manifest.read(directory)
    tables = [dataprep.open_shard(p) for p in manifest.shard_paths(split)]
    out: dict[str, Any] = {}
    for name in tables[0].schema.names:
        if name == "doc_starts":
            out[name] = [v for t in tables for v in t.column(name).to_pylist()]
        else:
            out[name] = np.concatenate([np.array(t.column(name).to_pylist()) for t in tables])
    return out


def collect(loader) -> list[dict[str, torch.Tensor]]:
    return list(loader)


def real_rows(batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
    idx = torch.cat([b["sample_index"] for b in batches]).numpy()
    return idx[idx != FILLER]


# --- ShardSet -----------------------------------------------------------------------------


def test_shardset_reads_the_manifest(clm_dir: Path, nsp_dir: Path) -> None:
    s = ShardSet(clm_dir)
    m = s.manifest
    assert len(s.files) >= 3, "the test wants several shards"
    assert (s.num_rows, s.seq_len, s.objective) == (m.splits["train"].rows, SEQ_LEN, "clm")
    assert (s.eos_id, s.pad_id, s.vocab_size) == (0, 1, 600)
    n = ShardSet(nsp_dir, "val")
    assert (n.objective, n.layout, n.static_masking) == ("mlm", "nsp", False)
    assert (n.pad_id, n.cls_id, n.sep_id, n.mask_id) == (1, 2, 3, 4)
    assert n.special_ids == (0, 1, 2, 3, 4)


def test_gather_matches_the_shards_in_requested_order(clm_dir: Path) -> None:
    s = ShardSet(clm_dir)
    r = raw(clm_dir)
    rows = np.array([s.num_rows - 1, 0, 5, 5, 300, 77, s.num_rows // 2])
    got = s.gather(rows)
    assert np.array_equal(got["input_ids"], r["input_ids"][rows])
    assert np.array_equal(got["n_tokens"], r["n_tokens"][rows])
    for i, row in enumerate(rows):
        assert np.flatnonzero(got["doc_starts"][i]).tolist() == r["doc_starts"][row]
    # A worker under `spawn` gets a pickled copy that reopens its own memory maps.
    again = pickle.loads(pickle.dumps(s))
    assert np.array_equal(again.gather(rows, ["input_ids"])["input_ids"], got["input_ids"])
    with pytest.raises(IndexError, match="out of range"):
        s.gather([s.num_rows])


def test_missing_or_broken_manifest_and_shards(tmp_path: Path, clm_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.json"):
        ShardSet(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json: not a valid manifest"):
        ShardSet(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(clm_dir, copy)
    (copy / "train-00001.arrow").unlink()
    with pytest.raises(FileNotFoundError, match=r"train-00001\.arrow: shard listed in"):
        ShardSet(copy)
    with pytest.raises(ValueError, match="no split 'test'"):
        ShardSet(clm_dir, "test")


# --- order and plan -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_global_order_is_a_permutation(n: int) -> None:
    order = GlobalOrder(n, seed=7)
    perm = order.rows(epoch=3)
    assert sorted(perm.tolist()) == list(range(n))
    assert np.array_equal(order.rows(3, n // 3, n // 2), perm[n // 3 : n // 2])
    assert np.array_equal(GlobalOrder(n, seed=7, shuffle=False).rows(3), np.arange(n))


def test_global_order_depends_on_seed_and_epoch_and_scales() -> None:
    a = GlobalOrder(1000, seed=0).rows(0)
    assert not np.array_equal(a, GlobalOrder(1000, seed=0).rows(1))
    assert not np.array_equal(a, GlobalOrder(1000, seed=1).rows(0))
    assert np.array_equal(a, GlobalOrder(1000, seed=0).rows(0))
    assert not np.array_equal(a[:100], np.sort(a[:100])), "not shuffled"
    big = GlobalOrder(10**9, seed=1).rows(2, 10**9 - 50_000, 10**9)
    assert big.min() >= 0 and big.max() < 10**9 and np.unique(big).size == big.size


def test_step_rows_do_not_depend_on_how_the_global_batch_is_split() -> None:
    n, micro = 1003, 4  # global batch 32, 31.3 steps
    plans = [
        StepPlan(n, world_size=w, grad_accum=a, micro_batch=micro, seed=5)
        for w, a in [(1, 8), (2, 4), (8, 1)]
    ]
    assert {p.steps_per_epoch for p in plans} == {steps_per_epoch(n, 1, 8, micro)} == {32}
    for step in range(32):
        sets = []
        for p in plans:
            mb = np.concatenate([p.micro_batches(0, step, r) for r in range(p.world_size)])
            assert mb.shape == (8, micro)
            sets.append(sorted(mb[mb != FILLER].tolist()))
        assert sets[0] == sets[1] == sets[2]
    # The partial last step's real rows are spread over the ranks, not left to one of them.
    last = [(plans[2].micro_batches(0, 31, r) != FILLER).sum() for r in range(8)]
    assert sum(last) == n - 31 * 32 and max(last) - min(last) <= 1


def test_step_plan_caches_the_order_in_chunks_without_changing_it() -> None:
    small = StepPlan(10_000, world_size=3, grad_accum=2, micro_batch=7, seed=4)
    small._CHUNK_POSITIONS = 100  # two steps a chunk instead of ~1,500
    g = small.global_batch
    for epoch in (0, 1):
        for step in [0, 1, 2, 3, 57, 56, 0, small.steps_per_epoch - 1]:
            expect = small.order.rows(epoch, step * g, min((step + 1) * g, 10_000))
            assert np.array_equal(small.step_rows(epoch, step), expect)


# --- loaders ------------------------------------------------------------------------------


def test_every_row_once_per_epoch_across_ranks_and_workers(clm_dir: Path) -> None:
    s = ShardSet(clm_dir)
    r = raw(clm_dir)
    per_rank = [
        collect(
            make_loader(
                s, rank=rank, world_size=2, micro_batch=7, grad_accum=3, seed=1, epoch=0,
                num_workers=2,
            )
        )
        for rank in range(2)
    ]  # fmt: skip
    assert s.num_rows % (2 * 3 * 7), "N should not divide the global batch"
    steps = steps_per_epoch(s.num_rows, 2, 3, 7)
    assert [len(b) for b in per_rank] == [steps * 3, steps * 3]
    rows = np.concatenate([real_rows(b) for b in per_rank])
    assert np.array_equal(np.sort(rows), np.arange(s.num_rows))
    for batches in per_rank:
        for b in batches:
            assert b["input_ids"].shape == (7, SEQ_LEN) and b["input_ids"].dtype == torch.int64
            real = b["sample_index"] != FILLER
            idx = b["sample_index"][real].numpy()
            assert np.array_equal(b["input_ids"][real].numpy(), r["input_ids"][idx])
            assert (b["labels"][~real] == IGNORE_INDEX).all()
            assert (b["input_ids"][~real] == s.pad_id).all()
    assert any((b["sample_index"] == FILLER).any() for b in per_rank[0] + per_rank[1])


def test_resume_yields_the_tail_of_the_stream(fs_dir: Path) -> None:
    s = ShardSet(fs_dir)
    kw = dict(rank=1, world_size=2, micro_batch=4, grad_accum=2, seed=3, epoch=1)
    loader = make_loader(s, **kw)
    full = collect(loader)
    start = 5
    tail = collect(make_loader(s, start_step=start, **kw))
    assert len(tail) == len(full) - start * 2
    for a, b in zip(full[start * 2 :], tail, strict=True):
        for k in a:
            assert torch.equal(a[k], b[k]), k
    steps = list(iter_steps(make_loader(s, start_step=start, **kw)))
    assert [i for i, _ in steps] == list(range(start, len(full) // 2))
    assert all(len(mbs) == 2 for _, mbs in steps)
    with pytest.raises(ValueError, match="out of range"):
        make_loader(s, start_step=len(full), **kw)


def test_clm_labels_are_the_next_token_inside_the_row(clm_dir: Path) -> None:
    s = ShardSet(clm_dir)
    r = raw(clm_dir)
    last = s.num_rows - 1
    assert r["n_tokens"][last] < SEQ_LEN, "the last row is padded"
    rows = np.array([0, last, 17, FILLER])
    b = MicroBatches(s)[rows]
    assert set(b) == {"input_ids", "labels", "sample_index"}
    assert b["sample_index"].tolist() == rows.tolist()
    for i, row in enumerate(rows[:3]):
        n = r["n_tokens"][row]
        ids = r["input_ids"][row]
        expect = np.full(SEQ_LEN, IGNORE_INDEX)
        expect[: n - 1] = ids[1:n]
        assert np.array_equal(b["labels"][i].numpy(), expect)
        assert np.array_equal(b["input_ids"][i].numpy(), ids)
    assert (b["labels"][3] == IGNORE_INDEX).all() and (b["input_ids"][3] == s.pad_id).all()


def test_doc_mask_positions_and_doc_ids(clm_dir: Path) -> None:
    s = ShardSet(clm_dir)
    r = raw(clm_dir)
    multi = [i for i, d in enumerate(r["doc_starts"]) if len(d) > 1]
    rows = np.array([*multi[:3], 0, 1, FILLER])
    b = MicroBatches(s, doc_mask=True)[rows]
    for i, row in enumerate(rows[:-1]):
        pos, doc, p, d = [], [], 0, 0
        for t in range(SEQ_LEN):
            if t in r["doc_starts"][row]:
                p, d = 0, d + 1
            pos.append(p)
            doc.append(d)
            p += 1
        assert b["position_ids"][i].tolist() == pos
        assert b["doc_ids"][i].tolist() == doc
    assert b["position_ids"][-1].tolist() == list(range(SEQ_LEN))


def test_dynamic_masking_is_keyed_by_seed_epoch_and_row(fs_dir: Path) -> None:
    s = ShardSet(fs_dir)
    r = raw(fs_dir)
    m = MaskingConfig(seed=11, probability=0.3)
    ds = MicroBatches(s, epoch=2, masking=m)
    a, b = ds[[10, 20, 30, 40]], ds[[40, 99, 10, FILLER]]
    assert torch.equal(a["labels"][0], b["labels"][2]) and torch.equal(
        a["labels"][3], b["labels"][0]
    )
    assert torch.equal(a["input_ids"][0], b["input_ids"][2])
    assert not torch.equal(MicroBatches(s, epoch=3, masking=m)[[10]]["labels"][0], a["labels"][0])
    # Labels hold the original id where masked; specials and padding are never masked.
    orig = r["input_ids"][[10, 20, 30, 40]]
    lab = a["labels"].numpy()
    masked = lab != IGNORE_INDEX
    assert masked.any() and np.array_equal(lab[masked], orig[masked])
    assert not (masked & (r["special_tokens_mask"][[10, 20, 30, 40]] == 1)).any()
    assert (a["input_ids"].numpy()[masked] == s.mask_id).mean() > 0.5
    assert np.array_equal(a["input_ids"].numpy()[~masked], orig[~masked])
    n = r["n_tokens"][[10, 20, 30, 40]]
    assert np.array_equal(a["attention_mask"].numpy(), (np.arange(SEQ_LEN) < n[:, None]) * 1)
    assert (b["attention_mask"][3] == 1).all(), "fillers attend somewhere (no NaN rows)"
    assert (b["labels"][3] == IGNORE_INDEX).all() and b["nsp_labels"][3] == IGNORE_INDEX
    assert (a["nsp_labels"] == IGNORE_INDEX).all(), "full-sentence rows have no pair"
    # Whatever the rank split and batch size, a row gets the same mask.
    by_row: dict[int, torch.Tensor] = {}
    for world, micro in [(1, 8), (2, 3)]:
        for rank in range(world):
            loader = make_loader(
                s, rank=rank, world_size=world, micro_batch=micro, grad_accum=1, seed=0,
                epoch=2, masking=m,
            )  # fmt: skip
            for i, batch in enumerate(loader):
                if i == 4:
                    break
                for row, lab in zip(batch["sample_index"].tolist(), batch["labels"], strict=True):
                    if row in by_row:
                        assert torch.equal(by_row[row], lab)
                    by_row[row] = lab
    for row in (10, 20, 30, 40):
        if row in by_row:
            assert torch.equal(by_row[row], a["labels"][[10, 20, 30, 40].index(row)])


def test_nsp_shards_map_labels_and_segments(nsp_dir: Path) -> None:
    s = ShardSet(nsp_dir)
    r = raw(nsp_dir)
    assert len(s.files) > 1
    rows = np.arange(0, s.num_rows, 37)
    b = MicroBatches(s, masking=MaskingConfig(strategy="whole_word"))[rows]
    assert set(np.unique(r["nsp_label"][rows])) == {0, 1}
    assert np.array_equal(b["nsp_labels"].numpy(), r["nsp_label"][rows])
    assert np.array_equal(b["token_type_ids"].numpy(), r["token_type_ids"][rows])
    assert (b["labels"] != IGNORE_INDEX).any()


def test_static_masking_uses_the_labels_column(static_dir: Path) -> None:
    s = ShardSet(static_dir)
    r = raw(static_dir)
    assert s.static_masking
    rows = np.array([3, 0, s.num_rows - 1, 150])
    a = MicroBatches(s, masking=MaskingConfig(seed=1))[rows]
    b = MicroBatches(s, epoch=5, masking=MaskingConfig(seed=9))[rows]
    assert np.array_equal(a["labels"].numpy(), r["labels"][rows])
    assert np.array_equal(a["input_ids"].numpy(), r["input_ids"][rows])
    for k in a:
        assert torch.equal(a[k], b[k])


def test_eval_loader_covers_val_once_across_ranks(nsp_dir: Path) -> None:
    s = ShardSet(nsp_dir, "val")
    world = 3
    loaders = [make_eval_loader(s, rank=k, world_size=world, micro_batch=4) for k in range(world)]
    batches = [collect(x) for x in loaders]
    assert len({len(b) for b in batches}) == 1
    assert len(batches[0]) == -(-s.num_rows // (world * 4))
    rows = np.concatenate([real_rows(b) for b in batches])
    assert np.array_equal(np.sort(rows), np.arange(s.num_rows))
    assert all(mb["input_ids"].shape == (4, SEQ_LEN) for b in batches for mb in b)
    # A subset is fixed: the same rows and masks at every evaluation.
    sub = [collect(make_eval_loader(s, rank=0, world_size=1, micro_batch=4, max_rows=10))]
    sub.append(collect(make_eval_loader(s, rank=0, world_size=1, micro_batch=4, max_rows=10)))
    assert real_rows(sub[0]).size == 10 and np.unique(real_rows(sub[0])).size == 10
    for x, y in zip(*sub, strict=True):
        for k in x:
            assert torch.equal(x[k], y[k])


def test_bad_arguments(clm_dir: Path, fs_dir: Path) -> None:
    s = ShardSet(clm_dir)
    with pytest.raises(ValueError, match="rank 2 out of range"):
        make_loader(s, rank=2, world_size=2, micro_batch=2, grad_accum=1, seed=0, epoch=0)
    with pytest.raises(ValueError, match="micro_batch"):
        make_loader(s, rank=0, world_size=1, micro_batch=0, grad_accum=1, seed=0, epoch=0)
    with pytest.raises(ValueError, match="doc_mask"):
        MicroBatches(ShardSet(fs_dir), doc_mask=True)


def test_loaders_never_draw_from_the_global_rng(clm_dir: Path) -> None:
    """The global torch RNG is dropout's: a loader that drew its workers' base seed from it
    (one draw per iterator, so one more in a resumed run) broke bit-identical resume."""
    s = ShardSet(clm_dir)
    before = torch.get_rng_state()
    for workers in (0, 1):
        loader = make_loader(s, rank=0, world_size=1, micro_batch=4, grad_accum=1, seed=0,
                             epoch=0, num_workers=workers)  # fmt: skip
        next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)
