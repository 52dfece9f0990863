"""FSDP2, sharded checkpoints, activation checkpointing, per-block compile, unpadded BERT and
document masking without a dense mask: each checked against the path it replaces, on CPU
(2 gloo ranks through torchrun for the distributed parts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import flip  # noqa: E402
from faultkit import TRAINER_ENV, trainer_cmd  # noqa: E402

import dataprep  # noqa: E402
from train import checkpoint, config, model  # noqa: E402
from train.config import ConfigError  # noqa: E402


def _bert(nsp: bool = True, dropout: float = 0.0) -> model.BERT:
    torch.manual_seed(0)
    cfg = model.model_config(
        "tiny", "bert", vocab_size=600, max_seq_len=64, nsp_head=nsp, dropout=dropout
    )
    return model.build_model(cfg)  # type: ignore[return-value]


def _gpt(dropout: float = 0.0, n_layer: int = 2) -> model.GPT:
    torch.manual_seed(0)
    cfg = model.model_config(
        "tiny", "gpt", vocab_size=600, max_seq_len=64, dropout=dropout, n_layer=n_layer
    )
    return model.build_model(cfg)  # type: ignore[return-value]


def _mlm_batch(lengths: list[int], T: int = 64) -> dict[str, torch.Tensor]:
    """Right-padded rows of the given real lengths, ~20% of real tokens labelled."""
    g = torch.Generator().manual_seed(1)
    B = len(lengths)
    real = torch.arange(T) < torch.tensor(lengths)[:, None]
    labels = torch.randint(5, 600, (B, T), generator=g)
    picked = (torch.rand(B, T, generator=g) < 0.2) & real
    return {
        "input_ids": torch.randint(5, 600, (B, T), generator=g),
        "labels": torch.where(picked, labels, -100),
        "attention_mask": real.long(),
        "token_type_ids": ((torch.arange(T) >= 10) & real).long(),
        "nsp_labels": torch.tensor([0, 1, -100, 1][:B]),
    }


def _grads(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


# --- model-level equivalences --------------------------------------------------------------


def test_unpadded_bert_equals_the_padded_path():
    batch = _mlm_batch([20, 64, 7, 1])
    m = _bert()
    padded = m(**batch)
    sum(padded.values()).backward()
    want = _grads(m)
    m.zero_grad()
    m.unpad = True
    unpadded = m(**batch)
    sum(unpadded.values()).backward()
    for key in ("lm", "nsp"):
        torch.testing.assert_close(unpadded[key], padded[key], rtol=1e-5, atol=1e-5)
    got = _grads(m)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    # The hidden states of the real tokens are the padded path's at their positions.
    with torch.no_grad():
        h, index, offsets = m.hidden_states_unpadded(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        full = m.hidden_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert offsets.tolist() == [0, 20, 84, 91, 92]
    torch.testing.assert_close(h, full.reshape(-1, full.size(-1))[index], rtol=1e-5, atol=1e-5)


def test_unpadded_bert_filler_rows_attend_like_the_padded_path():
    batch = _mlm_batch([30, 5])
    batch["attention_mask"][1] = 0  # a row without a real token: attends to every key
    batch["labels"][1] = -100
    m = _bert(nsp=False)
    want = m(**{k: v for k, v in batch.items() if k != "nsp_labels"})["lm"]
    m.unpad = True
    got = m(**{k: v for k, v in batch.items() if k != "nsp_labels"})["lm"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_varlen_attention_is_attention_within_each_sequence():
    g = torch.Generator().manual_seed(0)
    lengths = [3, 9, 1, 6]
    offsets = torch.tensor([0, 3, 12, 13, 19])
    q, k, v = (torch.randn(19, 2, 8, generator=g) for _ in range(3))
    got = model.varlen_attention(q, k, v, offsets, max_len=max(lengths))
    for b in range(len(lengths)):
        s, e = int(offsets[b]), int(offsets[b + 1])
        one = torch.nn.functional.scaled_dot_product_attention(
            *(t[s:e].transpose(0, 1)[None] for t in (q, k, v))
        )[0].transpose(0, 1)
        torch.testing.assert_close(got[s:e], one, rtol=1e-5, atol=1e-6)


def test_document_mask_as_flex_block_mask_equals_the_dense_mask():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 600, (3, 64), generator=g)
    doc_ids = torch.cumsum(torch.rand(3, 64, generator=g) < 0.08, dim=1)
    m = _gpt()
    dense = m.logits(ids, doc_ids=doc_ids)
    assert isinstance(m.doc_mask(doc_ids), torch.Tensor)  # auto on CPU: the dense mask
    dense.square().mean().backward()
    want = _grads(m)
    m.zero_grad()
    m.doc_attention = "flex"
    assert not isinstance(m.doc_mask(doc_ids), torch.Tensor)  # a BlockMask: no (B, T, T)
    flex = m.logits(ids, doc_ids=doc_ids)
    flex.square().mean().backward()
    torch.testing.assert_close(flex, dense, rtol=1e-5, atol=1e-5)
    for name, grad in _grads(m).items():
        torch.testing.assert_close(grad, want[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("arch", ["gpt", "bert"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(arch):
    """Dropout on: the recompute replays the forward's dropout masks."""
    if arch == "gpt":
        m: model.GPT | model.BERT = _gpt(dropout=0.1, n_layer=4)
        ids = torch.randint(0, 600, (2, 64), generator=torch.Generator().manual_seed(3))
        batch = {"input_ids": ids, "labels": ids}
    else:
        m = _bert(dropout=0.1)
        m.unpad = True
        batch = _mlm_batch([40, 64])
    results = {}
    for mode in ("none", "full", "selective"):
        m.set_activation_checkpointing(mode)
        m.zero_grad()
        torch.manual_seed(7)
        loss = sum(m(**batch).values())
        loss.backward()
        results[mode] = (loss.detach(), _grads(m))
    flags = [b.checkpointed for b in m.blocks_list()]
    assert flags == [i % 2 == 1 for i in range(len(flags))]  # selective: blocks 1, 3, ...
    for mode in ("full", "selective"):
        assert torch.equal(results[mode][0], results["none"][0])
        for name, grad in results["none"][1].items():
            torch.testing.assert_close(results[mode][1][name], grad, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="activation checkpointing 'some'"):
        m.set_activation_checkpointing("some")


# Dynamo's own probe of its inputs (`hasattr(t, "grad")`) warns about non-leaf tensors.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_blocks_compile_to_one_graph():
    """fullgraph=True raises on any graph break. The whole BERT forward breaks at the gather of
    the masked positions (`nonzero`, data-dependent shape): that stays eager, between the
    compiled blocks."""
    torch._dynamo.reset()
    x = torch.randn(2, 64, 64)
    gpt, bert, flex_gpt = _gpt(), _bert(), _gpt()
    flex_gpt.doc_attention = "flex"
    doc_ids = torch.cumsum(torch.rand(2, 64) < 0.1, dim=1)
    cases = [
        (gpt.blocks[0], (x, None)),
        (gpt.blocks[0], (x, gpt.doc_mask(doc_ids))),
        (gpt.blocks[0], (x, flex_gpt.doc_mask(doc_ids))),  # a flex BlockMask
        (bert.layers[0], (x, torch.ones(2, 1, 1, 64, dtype=torch.bool))),
        (bert.layers[0], (torch.randn(50, 64), None, torch.tensor([0, 20, 45, 50]), 25)),
    ]
    for block, args in cases:
        compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(*args), block(*args), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # (dynamo warns about .grad of non-leaf tensors otherwise)
        explained = torch._dynamo.explain(bert)(**_mlm_batch([20, 64]))
    assert any("nonzero" in str(r.reason) for r in explained.break_reasons)
    # compile_blocks: a model whose blocks run compiled gives the eager model's loss.
    batch = _mlm_batch([20, 64])
    want = bert(**batch)["lm"]
    bert.compile_blocks(backend="aot_eager")
    bert.unpad = True
    torch.testing.assert_close(bert(**batch)["lm"], want, rtol=1e-5, atol=1e-5)
    assert [n for n, _ in bert.named_parameters()] == [n for n, _ in _bert().named_parameters()]
    torch._dynamo.reset()


def test_real_tokens_are_counted_without_padding_and_filler_rows():
    from train import train as trainer

    mlm = _mlm_batch([20, 64, 7])
    mlm["sample_index"] = torch.tensor([4, 9, -1])  # the last row is a filler
    clm_ids = torch.randint(0, 600, (2, 8))
    labels = clm_ids.clone()
    labels[:, -1] = -100  # as the loader makes them: the last position has no next token
    labels[0, 5:] = -100  # 6 real tokens: 5 targets and the first token
    clm = {"input_ids": clm_ids, "labels": labels, "sample_index": torch.tensor([0, 1])}
    assert trainer.real_lengths(mlm).tolist() == [20, 64, 0]
    assert trainer.real_lengths(clm).tolist() == [6, 8]
    counts = trainer._counts([mlm])
    assert counts[2:].tolist() == [84.0, 20.0**2 + 64.0**2]


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--parallel", "zero3"], "argument --parallel: invalid choice: 'zero3'"),
        (["--activation-checkpointing", "half"], "argument --activation-checkpointing"),
        (["--async-checkpoint"], "--async-checkpoint needs --parallel fsdp"),
    ],
)
def test_parallel_options_are_validated(argv, message):
    with pytest.raises(ConfigError, match=message):
        config.parse(["--shards", "s", *argv])


def test_unpad_is_refused_for_clm_and_on_by_default_for_mlm(shards, tmp_path, capsys):
    from train import train as trainer

    code = trainer.main(["--shards", str(shards["clm"]), "--unpad", "--out", str(tmp_path)])
    assert code == 1
    assert "--unpad is for mlm shards" in capsys.readouterr().err
    from train import distributed

    cfg = config.parse(["--shards", str(shards["nsp"]), "--model", "tiny", "--out", str(tmp_path)])
    t = trainer.Trainer(cfg, distributed.Dist(0, 1, 0, 1, torch.device("cpu")))
    assert isinstance(t.model, model.BERT) and t.model.unpad


# --- 2 gloo ranks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(
    tmp_path_factory: pytest.TempPathFactory, demo_corpus: Path, specials_tokenizer
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel-shards")
    tok = specials_tokenizer[0]
    out = {"clm": root / "clm", "nsp": root / "nsp"}
    dataprep.tokenize(demo_corpus, tok, out["clm"], seq_len=64, val_fraction=0.05)
    dataprep.tokenize(
        demo_corpus, tok, out["nsp"], seq_len=64, val_fraction=0.05, objective="mlm", layout="nsp"
    )
    return out


def launch(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = trainer_cmd(args, nproc)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **TRAINER_ENV}, timeout=300
    )
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [m["loss"] for m in lines if "loss" in m]


COMMON = ["--model", "tiny", "--device", "cpu", "--lr", "3e-3", "--warmup-steps", "2",
          "--log-every", "1", "--eval-every", "0", "--micro-batch", "4",
          "--global-batch", "16", "--max-steps", "6"]  # fmt: skip


def test_fsdp_matches_ddp_and_resumes_exactly_on_any_number_of_ranks(shards, tmp_path):
    base = [*COMMON, "--shards", str(shards["nsp"])]
    fsdp = [*base, "--parallel", "fsdp", "--activation-checkpointing", "selective"]
    ddp_run, fsdp_run, cut = (tmp_path / n for n in ("ddp", "fsdp", "cut"))
    launch([*base, "--out", str(ddp_run)])
    launch([*fsdp, "--out", str(fsdp_run), "--ckpt-every", "2", "--async-checkpoint",
            "--export-hf"])  # fmt: skip
    reference = losses(fsdp_run)
    assert len(reference) == 6
    # Same data, same initial weights, same update: the curve of DDP within float rounding.
    assert reference == pytest.approx(losses(ddp_run), rel=1e-5)

    # Every periodic (background) checkpoint completed, renamed into place and verified.
    saved = checkpoint.list_checkpoints(fsdp_run)
    assert [p.name for p in saved] == ["step-00000002", "step-00000004", "step-00000006"]
    for path in saved:
        meta = checkpoint.verify(path)
        assert meta["parallel"] == "fsdp" and checkpoint.is_sharded(path)
        assert any(name.startswith("dcp/") for name in meta["checksums"])

    # Stopped at step 3 and resumed: the uninterrupted run's losses, bit for bit.
    launch([*fsdp, "--out", str(cut), "--halt-at-step", "3"])
    launch([*fsdp, "--out", str(cut)])
    assert losses(cut) == reference

    # The 2-rank shards of step 2 resumed by one process: the same curve. (Without dropout: its
    # masks are drawn per rank. Loading into whole tensors is what the export below does.)
    one = tmp_path / "one"
    shutil.copytree(saved[0], checkpoint.checkpoint_dir(one) / saved[0].name)
    launch([*base, "--parallel", "fsdp", "--out", str(one)], nproc=1)
    assert losses(one) == pytest.approx(reference[2:], rel=1e-5)

    # Export (rank 0 alone, at the end of the run) and --init-from read a sharded checkpoint
    # whole.
    state = checkpoint.load(saved[-1])
    m = model.build_model(model.ModelConfig.from_dict(state["model_config"]))
    m.load_state_dict(state["model"])
    from safetensors.torch import load_file

    exported = load_file(fsdp_run / "hf" / "model.safetensors")
    torch.testing.assert_close(exported["bert.embeddings.word_embeddings.weight"],
                               state["model"]["word_emb.weight"])  # fmt: skip
    # A flipped byte in one shard file is found, naming it.
    shard = next((saved[-1] / checkpoint.SHARDED).glob("*.distcp"))
    flip(shard)
    with pytest.raises(checkpoint.CorruptCheckpoint, match=shard.name):
        checkpoint.verify(saved[-1])


def test_checkpoints_resume_across_ddp_and_fsdp_on_2_ranks(shards, tmp_path):
    """A ddp checkpoint resumed with --parallel fsdp, and an fsdp one with --parallel ddp, on 2
    gloo ranks: the first loss after the resume (the loaded weights' forward) is the
    uninterrupted run's bit for bit, the rest of the curve within float rounding (the update
    differs by the reduction order only)."""
    base = [*COMMON, "--shards", str(shards["clm"])]
    full, to_fsdp, to_ddp = (tmp_path / n for n in ("full", "to_fsdp", "to_ddp"))
    launch([*base, "--out", str(full)])
    reference = losses(full)
    assert len(reference) == 6
    for out, first, then in [(to_fsdp, "ddp", "fsdp"), (to_ddp, "fsdp", "ddp")]:
        launch([*base, "--parallel", first, "--out", str(out), "--halt-at-step", "3"])
        saved = checkpoint.latest(out)
        assert saved is not None and checkpoint.is_sharded(saved) == (first == "fsdp")
        proc = launch([*base, "--parallel", then, "--out", str(out)])
        said = " ".join((proc.stdout + proc.stderr).split())
        assert f"saved with --parallel {first}, resumed with --parallel {then}" in said
        got = losses(out)
        assert got[:4] == reference[:4], (first, then)
        assert got == pytest.approx(reference, rel=1e-5), (first, then)


def test_optimizer_state_by_name_is_get_state_dicts_form():
    """The renaming of a one-file checkpoint's AdamW state (numbered parameters) is what
    torch's get_state_dict gives for the same optimizer (parameter names)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    m = _gpt()
    opt = torch.optim.AdamW(m.param_groups(0.1), lr=1e-3)
    ids = torch.randint(0, 600, (2, 64), generator=torch.Generator().manual_seed(4))
    sum(m(input_ids=ids, labels=ids).values()).backward()
    opt.step()
    got = checkpoint.optimizer_state_by_name(opt.state_dict(), m, opt)
    want = get_state_dict(m, opt)[1]
    assert [g["params"] for g in got["param_groups"]] == [g["params"] for g in want["param_groups"]]
    assert got["state"].keys() == want["state"].keys()
    for name, st in want["state"].items():
        for key, value in st.items():
            assert torch.equal(got["state"][name][key], value), (name, key)
    other = torch.optim.AdamW(m.parameters(), lr=1e-3)  # one group: another grouping
    with pytest.raises(ValueError, match=r"param groups of \[\d+\] parameters, this run's"):
        checkpoint.optimizer_state_by_name(other.state_dict(), m, opt)


def test_sharded_checkpoint_resumes_without_fsdp(shards, tmp_path):
    """A sharded checkpoint loads into whole tensors: an fsdp run stopped at step 2 and finished
    by a plain (ddp) process has the uninterrupted fsdp run's losses."""
    from train import train as trainer

    base = [*COMMON, "--shards", str(shards["clm"]), "--max-steps", "4"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert trainer.main([*base, "--parallel", "fsdp", "--out", str(full)]) == 0
    assert (
        trainer.main([*base, "--parallel", "fsdp", "--out", str(cut), "--halt-at-step", "2"]) == 0
    )
    assert checkpoint.is_sharded(checkpoint.latest(cut))
    assert trainer.main([*base, "--parallel", "ddp", "--out", str(cut)]) == 0
    assert losses(cut) == pytest.approx(losses(full), rel=1e-5)


def test_gpu_checks_skips_cleanly_without_cuda_and_refuses_unknown_checks():
    """bench/gpu_checks.py on this machine (its --dry-run is run by hand: minutes on CPU)."""
    script = Path(__file__).parent.parent / "bench" / "gpu_checks.py"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(script), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    if not torch.cuda.is_available():
        proc = run()
        assert proc.returncode == 0 and "skipped, no CUDA device" in proc.stdout
    proc = run("--dry-run", "--only", "mfu_gpt2,ddp_nccl")
    assert proc.returncode == 2 and "unknown --only names ['mfu_gpt2']" in proc.stdout
