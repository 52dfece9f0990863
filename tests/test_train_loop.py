"""The trainer end to end on CPU: 2-rank gloo runs through torchrun, exact resume, gradient
accumulation equivalence, SIGTERM, configuration. Tiny models on shards of the demo corpus."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import dataprep  # noqa: E402
from train import checkpoint, config, model, optim  # noqa: E402


@pytest.fixture(scope="module")
def shards(
    tmp_path_factory: pytest.TempPathFactory, demo_corpus: Path, specials_tokenizer
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-shards")
    tok = specials_tokenizer[0]
    out = {"clm": root / "clm", "nsp": root / "nsp"}
    dataprep.tokenize(
        demo_corpus, tok, out["clm"], seq_len=64, val_fraction=0.05, shard_size="64KB"
    )
    dataprep.tokenize(
        demo_corpus, tok, out["nsp"], seq_len=64, val_fraction=0.05, shard_size="64KB",
        objective="mlm", layout="nsp",
    )  # fmt: skip
    return out


def launch(args: list[str], nproc: int = 2, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node N -m train ARGS` (or plain python for 1 process)."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "train", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[tuple[int, float]]:
    return [(m["step"], m["loss"]) for m in metrics(run) if "loss" in m]


COMMON = ["--model", "tiny", "--device", "cpu", "--lr", "3e-3", "--warmup-steps", "2",
          "--log-every", "1", "--eval-every", "0", "--micro-batch", "4"]  # fmt: skip


def test_two_ranks_clm_loss_falls_and_resume_is_bit_identical(shards, tmp_path):
    base = [*COMMON, "--shards", str(shards["clm"]), "--objective", "clm", "--max-steps", "10",
            "--num-workers", "1", "--grad-accum", "2"]  # fmt: skip
    full = tmp_path / "full"
    launch([*base, "--out", str(full), "--export-hf"])
    reference = losses(full)
    assert [s for s, _ in reference] == list(range(1, 11))
    assert reference[-1][1] < reference[0][1] - 0.5, reference
    evals = [m for m in metrics(full) if "eval_loss" in m]
    assert evals and evals[-1]["step"] == 10 and evals[-1]["eval_ppl"] > 1

    cut = tmp_path / "cut"
    launch([*base, "--out", str(cut), "--halt-at-step", "4"])
    assert [s for s, _ in losses(cut)] == [1, 2, 3, 4]
    meta = json.loads((checkpoint.latest(cut) / "meta.json").read_text())
    assert (meta["step"], meta["reason"]) == (4, "halt")
    launch([*base, "--out", str(cut)])  # same command without the halt: resumes at step 4
    assert losses(cut) == reference  # bit-identical: same floats, not just close

    # --export-hf wrote a transformers model that gives our logits.
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(full / "hf").eval()
    ours = exported_source(full)
    ids = torch.randint(0, 500, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours.logits(ids), rtol=1e-4, atol=1e-4)
    assert transformers.AutoTokenizer.from_pretrained(full / "hf").eos_token == "<|endoftext|>"


def exported_source(run: Path) -> torch.nn.Module:
    """The model of the run's latest checkpoint, as the trainer saved it."""
    state = checkpoint.load(checkpoint.latest(run))
    m = model.build_model(model.ModelConfig.from_dict(state["model_config"]))
    m.load_state_dict(state["model"])
    return m.eval()


def test_two_ranks_bert_nsp_trains(shards, tmp_path):
    run = tmp_path / "bert"
    launch([*COMMON, "--shards", str(shards["nsp"]), "--objective", "mlm", "--max-steps", "40",
            "--num-workers", "0", "--out", str(run)])  # fmt: skip
    rows = [m for m in metrics(run) if "loss" in m]
    # Masked-token losses are noisy (about 40 targets per micro-batch): compare means.
    first, last = (sum(m["loss"] for m in part) / 5 for part in (rows[:5], rows[-5:]))
    assert last < first - 0.3, (first, last)
    assert all("nsp_loss" in m for m in rows)
    meta = json.loads((checkpoint.latest(run) / "meta.json").read_text())
    assert meta["model_config"]["arch"] == "bert" and meta["model_config"]["nsp_head"]

    transformers = pytest.importorskip("transformers")
    out = subprocess.run(
        [sys.executable, "-m", "train.export", str(run), "--out", str(tmp_path / "hf")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == str(tmp_path / "hf")
    hf = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(5, 500, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(
            hf(ids).logits, exported_source(run).logits(ids), rtol=1e-4, atol=1e-4
        )


def test_gradient_accumulation_equivalence(shards, tmp_path):
    """1 rank x 8 micro-batches, 2 ranks x 4 and 8 ranks x 1 give the same updates (same global
    batch). MLM shards: the target count differs between micro-batches, so normalizing per
    micro-batch instead of by the step's global count would fail this."""
    base = [*COMMON, "--shards", str(shards["nsp"]), "--max-steps", "3", "--num-workers", "0",
            "--global-batch", "32", "--micro-batch", "4"]  # fmt: skip
    runs = {n: tmp_path / f"ranks{n}" for n in (1, 2, 8)}
    for n, run in runs.items():
        launch([*base, "--out", str(run)], nproc=n)
    ref = metrics(runs[1])
    ref_weights = checkpoint.load(checkpoint.latest(runs[1]))["model"]
    for n in (2, 8):
        for a, b in zip(ref, metrics(runs[n]), strict=True):
            assert a["step"] == b["step"]
            for key in ("loss", "nsp_loss", "grad_norm", "eval_loss", "eval_nsp_loss"):
                if key in a:
                    assert a[key] == pytest.approx(b[key], rel=1e-5), (n, key)
        weights = checkpoint.load(checkpoint.latest(runs[n]))["model"]
        assert_same_weights(ref_weights, weights)

    # Stop on 2 ranks, resume on 1: the same global order, the same updates.
    moved = tmp_path / "moved"
    launch([*base, "--out", str(moved), "--halt-at-step", "2"], nproc=2)
    launch([*base, "--out", str(moved)], nproc=1)
    for (s1, l1), (s2, l2) in zip(losses(runs[1]), losses(moved), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5)
    assert_same_weights(ref_weights, checkpoint.load(checkpoint.latest(moved))["model"])


def assert_same_weights(ref: dict, weights: dict) -> None:
    for name, t in ref.items():
        # Summation order differs, and Adam's first steps move a weight by about +-lr whatever
        # the gradient's size: 1e-4 is far below lr (3e-3), far above rounding.
        torch.testing.assert_close(t, weights[name], rtol=0, atol=1e-4, msg=name)


def test_sigterm_under_torchrun_saves_and_resume_finishes(shards, tmp_path):
    """Preemption: torchrun forwards SIGTERM to each rank's process group, DataLoader workers
    included; the ranks finish the step, checkpoint and exit."""
    run = tmp_path / "term"
    args = [*COMMON, "--shards", str(shards["clm"]), "--max-steps", "100000",
            "--num-workers", "1", "--out", str(run)]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "train", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (run / "metrics.jsonl").exists() and len(losses(run)) >= 3
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "(SIGTERM)" in err, err[-3000:]  # the ranks saved (torchrun itself then exits 1)
    meta = json.loads((checkpoint.latest(run) / "meta.json").read_text())
    assert meta["reason"] == "SIGTERM" and meta["step"] >= 3
    assert [s for s, _ in losses(run)] == list(range(1, meta["step"] + 1))
    # Resumed (on one process) with a horizon that is already reached: nothing to do, exit 0.
    done = launch([*args, "--max-steps", str(meta["step"]), "--global-batch", "8"], nproc=1)
    assert "nothing to do" in done.stderr


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, {"step": step}, {"step": step}, keep_last=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "step-00000003",
        "step-00000004",
    ]
    # A crashed save leaves only a temporary, never a `step-*` directory.
    (checkpoint.checkpoint_dir(tmp_path) / ".step-00000005.tmp-1").mkdir()
    assert checkpoint.latest(tmp_path).name == "step-00000004"
    assert checkpoint.load(checkpoint.latest(tmp_path))["step"] == 4


def test_config_toml_and_overrides(tmp_path):
    run_toml = tmp_path / "run.toml"
    run_toml.write_text('shards = "s"\nlr = 0.01\nmicro_batch = 2\nmax_steps = 50\n')
    cfg = config.parse(["--config", str(run_toml), "--lr", "0.02", "--max-steps", "none"])
    got = (cfg.data.shards, cfg.optim.lr, cfg.batch.micro_batch, cfg.schedule.max_steps)
    assert got == ("s", 0.02, 2, None)
    (tmp_path / "bad.toml").write_text("learning_rate = 1\n")
    with pytest.raises(ValueError, match=r"bad\.toml: unknown keys \['learning_rate'\]"):
        config.parse(["--config", str(tmp_path / "bad.toml")])
    with pytest.raises(ValueError, match="not a multiple"):
        config.BatchConfig(micro_batch=3, global_batch=16).split(2)
    assert config.BatchConfig(micro_batch=2, global_batch=16).split(2) == (4, 16)


def test_bad_shards_directory_is_a_clear_error(tmp_path):
    proc = launch(
        ["--shards", str(tmp_path / "nope"), "--out", str(tmp_path / "r")], nproc=1, check=False
    )
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_lr_schedule_warmup_then_cosine():
    cfg = config.TrainConfig.from_dict(
        {"shards": "s", "lr": 1.0, "warmup_steps": 4, "min_lr_ratio": 0.0}
    )
    lrs = [optim.lr_at(s, cfg, 14) for s in range(15)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert lrs[9] == pytest.approx(0.5) and lrs[14] == pytest.approx(0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_compiled_run(shards, tmp_path):
    run = tmp_path / "gpu"
    launch([*COMMON[:-2], "--micro-batch", "8", "--shards", str(shards["clm"]), "--max-steps",
            "20", "--device", "cuda", "--dtype", "bf16", "--compile", "--out", str(run)], nproc=1)  # fmt: skip
    rows = [m for m in metrics(run) if "loss" in m]
    assert rows[-1]["loss"] < rows[0]["loss"] and all(0 < m.get("mfu", 1) < 1 for m in rows)


def test_non_finite_steps_are_skipped_then_stop(shards, tmp_path, monkeypatch):
    from train import distributed
    from train import train as trainer

    cfg = config.parse([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "5",
                        "--max-bad-steps", "2", "--num-workers", "0", "--out", str(tmp_path)])  # fmt: skip
    t = trainer.Trainer(cfg, distributed.Dist(0, 1, 0, 1, torch.device("cpu")))
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    forward = t.model.forward

    def nan_forward(**batch):
        out = forward(**batch)
        return {k: v * float("nan") for k, v in out.items()}

    monkeypatch.setattr(t.model, "forward", nan_forward)
    with pytest.raises(trainer.Stop, match="2 non-finite steps in a row"):
        t.run()
    for name, value in t.model.state_dict().items():
        assert torch.equal(value, before[name]), name  # no update was applied


def test_doc_mask_run(shards, tmp_path):
    """--doc-mask: per-document attention and positions inside packed rows, end to end."""
    run = tmp_path / "docmask"
    launch([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "6", "--doc-mask",
            "--out", str(run)], nproc=1)  # fmt: skip
    rows = losses(run)
    assert len(rows) == 6 and all(0 < loss < 10 for _, loss in rows)
    assert rows[-1][1] < rows[0][1]
