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

from conftest import flip  # noqa: E402
from faultkit import TRAINER_ENV, trainer_cmd  # noqa: E402

import dataprep  # noqa: E402
from train import checkpoint, config, model, schedule  # noqa: E402


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
    cmd = trainer_cmd(args, nproc)
    env = {**os.environ, **TRAINER_ENV}
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
    cmd = trainer_cmd(args)
    env = {**os.environ, **TRAINER_ENV}
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
    assert got == (("s",), 0.02, 2, None)
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
    lrs = [schedule.lr_at(s, cfg, 14) for s in range(15)]
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


# --- faults: nothing silent, nothing lost (issue 12) ----------------------------------------


def run_inline(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`python -m train ARGS` in this process (one rank): (exit code, stderr)."""
    from train import train as trainer

    code = trainer.main(args)
    return code, capsys.readouterr().err


def copy_shards(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def without_wall_clock(rows: list[dict]) -> list[dict]:
    from train.train import WALL_CLOCK_FIELDS

    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS} for r in rows]


@pytest.mark.slow
def test_flipped_shard_byte_stops_every_rank(shards, tmp_path):
    data = copy_shards(shards["clm"], tmp_path / "shards")
    flip(data / "train-00001.arrow")
    proc = launch([*COMMON, "--shards", str(data), "--max-steps", "2", "--out",
                   str(tmp_path / "run")], check=False)  # fmt: skip
    assert proc.returncode != 0
    # Every rank stops on the same verdict (torchrun may kill one before it prints it).
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error (rank")]
    assert lines, proc.stderr[-3000:]
    for line in lines:
        assert "train-00001.arrow: checksum mismatch" in line, proc.stderr[-3000:]
        assert "re-run `dataprep tokenize` into a fresh directory" in line
    assert not (tmp_path / "run" / "checkpoints").exists()  # not one step trained


def test_shards_are_verified_once_per_run(shards, tmp_path, capsys):
    data = copy_shards(shards["clm"], tmp_path / "shards")
    run = tmp_path / "run"
    args = [*COMMON, "--shards", str(data), "--max-steps", "2", "--out", str(run)]
    code, err = run_inline([*args, "--halt-at-step", "1"], capsys)
    assert code == 0 and "verified against the manifest in" in err and "MB/s" in err
    record = json.loads((run / "verified.json").read_text())["directories"][str(data.resolve())]
    assert set(record["files"]) == {p.name for p in data.iterdir() if p.name != "manifest.json"}
    code, err = run_inline(args, capsys)  # the resume does not read the data again
    assert code == 0 and "unchanged since verified" in err, err
    # A shard rewritten since (another mtime) is read again, and a mismatch stops the run.
    flip(data / "train-00000.arrow")
    code, err = run_inline([*args, "--max-steps", "3"], capsys)
    assert code == 1 and "train-00000.arrow: checksum mismatch" in err, err
    assert "Traceback" not in err


def test_flipped_manifest_byte_is_detected(shards, tmp_path, capsys):
    """The manifest carries its own checksum: a flipped byte anywhere in it (a shard's recorded
    SHA-256, or a value nothing else cross-checks) stops a fresh run and a resume alike."""
    data = copy_shards(shards["clm"], tmp_path / "shards")
    manifest = data / "manifest.json"
    original = manifest.read_bytes()
    sha = json.loads(original)["splits"]["train"]["shards"][0]["sha256"]
    flip(manifest, at=sha.encode())
    code, err = run_inline([*COMMON, "--shards", str(data), "--max-steps", "1",
                            "--out", str(tmp_path / "a")], capsys)  # fmt: skip
    assert code == 1 and "manifest.json: checksum mismatch" in err, err
    manifest.write_bytes(original)
    run = tmp_path / "b"
    args = [*COMMON, "--shards", str(data), "--max-steps", "3", "--out", str(run)]
    assert run_inline([*args, "--halt-at-step", "1"], capsys)[0] == 0
    key = b'"dataprep_version": "'
    flip(manifest, offset=original.index(key) + len(key))  # the version's first digit
    code, err = run_inline(args, capsys)
    assert code == 1 and "Traceback" not in err
    assert "manifest.json: checksum mismatch" in err, err


def test_resume_refuses_other_data_unless_allowed(shards, tmp_path, capsys):
    run = tmp_path / "run"
    base = [*COMMON, "--max-steps", "3", "--out", str(run)]
    args = [*base, "--shards", str(shards["clm"])]
    assert run_inline([*args, "--halt-at-step", "1"], capsys)[0] == 0
    meta = json.loads((checkpoint.latest(run) / "meta.json").read_text())
    assert meta["data"]["seed"] == 0 and meta["data"]["world_size"] == 1
    assert len(meta["data"]["manifest_sha256"]) == 64 and meta["data"]["global_batch"] == 4
    for extra, says in [
        (["--seed", "1"], "--seed: the checkpoint was trained with 0, now 1"),
        (["--no-shuffle"], "--shuffle: the checkpoint was trained with True, now False"),
        (["--shards", str(shards["nsp"]), "--objective", "mlm"], "--shards: the checkpoint"),
        (["--global-batch", "8"], "--global-batch: the checkpoint was trained with 4, now 8"),
    ]:
        # A repeated --shards is a mixture: the other shards replace the option.
        code, err = run_inline([*(base if extra[0] == "--shards" else args), *extra], capsys)
        assert code == 1 and says in err and "Traceback" not in err, (extra, err)
    code, err = run_inline([*args, "--seed", "1", "--allow-data-change"], capsys)
    assert code == 0 and "data changed (--allow-data-change): --seed" in err, err
    meta = json.loads((checkpoint.latest(run) / "meta.json").read_text())
    assert meta["data"]["seed"] == 1
    assert meta["data_changes"] == [
        {"step": 1, "changes": ["--seed: the checkpoint was trained with 0, now 1"]}
    ]


def test_corrupt_checkpoints_fall_back_to_the_previous_good_one(shards, tmp_path, capsys):
    run = tmp_path / "run"
    args = [*COMMON, "--shards", str(shards["clm"]), "--ckpt-every", "2", "--out", str(run)]
    assert run_inline([*args, "--max-steps", "4"], capsys)[0] == 0
    steps = [p.name for p in checkpoint.list_checkpoints(run)]
    assert steps == ["step-00000002", "step-00000004"]
    reference = losses(run)

    flip(run / "checkpoints" / "step-00000004" / "state.pt")
    code, err = run_inline([*args, "--max-steps", "5"], capsys)
    assert code == 0, err
    assert "step-00000004/state.pt: checksum mismatch" in err, err
    assert "resumed from" in err and "step-00000002" in err
    assert losses(run)[:4] == reference  # steps 3, 4 redone exactly

    flip(run / "checkpoints" / "step-00000005" / "meta.json", at=b'end"')  # "dnd"
    with pytest.raises(checkpoint.CorruptCheckpoint, match=r"meta\.json: content does not match"):
        checkpoint.verify(run / "checkpoints" / "step-00000005")
    flip(run / "checkpoints" / "step-00000004" / "meta.json")
    flip(run / "checkpoints" / "step-00000002" / "state.pt", offset=100)
    code, err = run_inline([*args, "--max-steps", "6"], capsys)
    assert code == 1 and "Traceback" not in err
    assert "no usable checkpoint in" in err and "step-00000005/meta.json" in err, err


def test_ranks_must_resume_the_same_step(shards, tmp_path, capsys):
    """Ranks that see different checkpoints (--out not shared) stop, saying so."""
    args = [*COMMON, "--shards", str(shards["clm"]), "--max-steps", "3", "--global-batch", "8"]
    assert run_inline([*args, "--halt-at-step", "1", "--out", str(tmp_path / "rank0")],
                      capsys)[0] == 0  # fmt: skip
    script = tmp_path / "per_rank_out.py"
    script.write_text(
        "import os, sys\nfrom train import train\n"
        "out = f'{sys.argv[1]}/rank{os.environ[\"RANK\"]}'\n"
        "sys.exit(train.main([*sys.argv[2:], '--out', out]))\n"
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(script), str(tmp_path), *args]  # fmt: skip
    env = {**os.environ, **TRAINER_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error (rank")]
    assert lines, proc.stderr[-3000:]
    assert all("ranks found different checkpoints" in line for line in lines), lines


@pytest.mark.slow
def test_two_ranks_resume_with_dropout_is_bit_identical_metrics_included(shards, tmp_path):
    """Dropout on, batches made on the prefetch thread, a stop off the --log-every grid: the
    metrics of the interrupted + resumed run are the uninterrupted run's, line for line."""
    base = [*COMMON, "--shards", str(shards["clm"]), "--max-steps", "8", "--num-workers", "0",
            "--dropout", "0.1", "--log-every", "3"]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    launch([*base, "--out", str(full)])
    launch([*base, "--out", str(cut), "--halt-at-step", "4"])
    partial = metrics(cut)[-1]
    assert partial["step"] == 4 and partial["partial"] is True  # steps 4..4 shown at the stop
    launch([*base, "--out", str(cut)])
    reference = metrics(full)
    assert [r["step"] for r in reference] == [3, 6, 8, 8]  # 3 loss lines, 1 eval line
    assert without_wall_clock(metrics(cut)) == without_wall_clock(reference)


@pytest.mark.parametrize("strategy", ["bernoulli", "fixed", "whole_word", "span"])
def test_mlm_resume_is_bit_identical_for_every_masking_strategy(shards, tmp_path, capsys, strategy):
    base = [*COMMON, "--shards", str(shards["nsp"]), "--max-steps", "4", "--dropout", "0.1",
            "--mask-strategy", strategy, "--log-every", "3"]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_inline([*base, "--out", str(full)], capsys)[0] == 0
    assert run_inline([*base, "--out", str(cut), "--halt-at-step", "2"], capsys)[0] == 0
    assert run_inline([*base, "--out", str(cut)], capsys)[0] == 0
    assert without_wall_clock(metrics(cut)) == without_wall_clock(metrics(full))


def test_bert_mfu_counts_the_predicted_positions_of_the_real_tokens(shards, tmp_path):
    from train import distributed
    from train import train as trainer

    cfg = config.parse([*COMMON, "--shards", str(shards["nsp"]), "--max-steps", "3",
                        "--peak-tflops", "1", "--out", str(tmp_path)])  # fmt: skip
    t = trainer.Trainer(cfg, distributed.Dist(0, 1, 0, 1, torch.device("cpu")))
    assert t.run() == 0
    positions = t.global_batch * t.shards.seq_len
    steps = t.micro_batches(0)
    for row in (m for m in metrics(tmp_path) if "loss" in m):
        micro = next(steps)
        lengths = torch.cat([b["attention_mask"].sum(1) for b in micro]).double()
        real = float(lengths.sum())
        assert real <= positions and row["pad_share"] == pytest.approx(1 - real / positions)
        share = sum(int((b["labels"] != -100).sum()) for b in micro) / real
        # Specials and the NSP second segment's structure: never the mask probability.
        assert abs(share - cfg.masking.mask_probability) > 0.005
        # Attention over each row's real tokens: sum(L^2) / sum(L) keys per token.
        flops = t.model.flops_per_token(float(lengths.square().sum()) / real, mlm_fraction=share)
        real_per_s = row["tokens_per_s"] * real / positions
        assert row["mfu"] == pytest.approx(flops * real_per_s / 1e12, rel=1e-9)


def test_checkpoint_checksums_and_legacy_checkpoints(tmp_path):
    path = checkpoint.save(tmp_path, 1, {"step": 1, "data": {}}, {"step": 1, "data": {}}, 3)
    meta = checkpoint.verify(path)
    assert set(meta["checksums"]) == {"state.pt", "meta.json"}
    # A flipped byte in the key that holds the checksums is no way around them.
    flip(path / "meta.json", at=b"checksums")
    with pytest.raises(checkpoint.CorruptCheckpoint, match="checksums are missing or damaged"):
        checkpoint.load(path)
    # A checkpoint of the trainer before checksums loads, with a note that it is unverified.
    legacy = checkpoint.checkpoint_dir(tmp_path) / "step-00000002"
    legacy.mkdir()
    torch.save({"step": 2}, legacy / "state.pt")
    (legacy / "meta.json").write_text('{"step": 2}')
    found, state, notes = checkpoint.load_latest_good(tmp_path)
    assert found == legacy and state == {"step": 2}
    assert notes == [f"{legacy}: saved by an older trainer, without checksums: not verified"]
