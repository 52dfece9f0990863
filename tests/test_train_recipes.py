"""What pretraining recipes reach for (issue 15, part B): learning-rate schedules, data
mixtures, continued pretraining (`--init-from`) and what people watch (TensorBoard, profiler
traces, plots). Tiny models on CPU, on shards of the demo corpus (enwiki and kowiki files)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from faultkit import TRAINER_ENV  # noqa: E402

import dataprep  # noqa: E402
from train import checkpoint, config, mixture, model, schedule  # noqa: E402
from train import train as trainer  # noqa: E402
from train.train import WALL_CLOCK_FIELDS  # noqa: E402

COMMON = ["--model", "tiny", "--device", "cpu", "--lr", "3e-3", "--warmup-steps", "2",
          "--log-every", "1", "--eval-every", "0", "--micro-batch", "4"]  # fmt: skip


@pytest.fixture(scope="module")
def shards(
    tmp_path_factory: pytest.TempPathFactory, demo_corpus: Path, specials_tokenizer
) -> dict[str, Path]:
    """`clm`: the whole demo corpus; `en` and `ko`: its English and Korean file alone (one
    tokenizer); `mlm`: MLM shards of the corpus."""
    root = tmp_path_factory.mktemp("recipe-shards")
    tok = specials_tokenizer[0]
    out = {name: root / name for name in ("clm", "en", "ko", "mlm")}
    opts = {"seq_len": 64, "val_fraction": 0.05, "shard_size": "64KB"}
    dataprep.tokenize(demo_corpus, tok, out["clm"], **opts)
    # The English file has 10 documents: 30% val gives it a val split.
    for name, file in [("en", "enwiki_00.gz"), ("ko", "kowiki_00.gz")]:
        dataprep.tokenize(demo_corpus / file, tok, out[name], **{**opts, "val_fraction": 0.3})
    dataprep.tokenize(demo_corpus, tok, out["mlm"], objective="mlm", **opts)
    return out


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in TRAINER_ENV.items():
        monkeypatch.setenv(key, value)


def run_inline(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`python -m train ARGS` in this process (one rank): (exit code, stderr)."""
    code = trainer.main(args)
    return code, capsys.readouterr().err


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def without_wall_clock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS} for r in rows]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.latest(run))["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --- schedules ----------------------------------------------------------------------------


def lrs(**options: object) -> list[float]:
    cfg = config.TrainConfig.from_dict({"shards": "s", "lr": 1.0, "warmup_steps": 2, **options})
    return [schedule.lr_at(s, cfg, 10) for s in range(11)]


def test_schedule_shapes():
    cosine = lrs(min_lr_ratio=0.0)
    assert cosine[:2] == [0.5, 1.0] and cosine[6] == pytest.approx(0.5)
    assert cosine[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in itertools.pairwise(cosine[1:]))
    linear = lrs(lr_schedule="linear", min_lr_ratio=0.2)
    assert linear[2:] == pytest.approx([1.0 - 0.1 * k for k in range(9)])
    assert lrs(lr_schedule="constant", min_lr_ratio=0.2)[1:] == [1.0] * 10
    wsd = lrs(lr_schedule="wsd", decay_fraction=0.3, min_lr_ratio=0.1)
    assert wsd[:8] == [0.5] + [1.0] * 7  # warmup, stable until step 7 = 10 - 0.3 x 10
    assert wsd[8:] == pytest.approx([0.7, 0.4, 0.1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr-schedule", "step"], "argument --lr-schedule: invalid choice: 'step'"),
        (["--decay-fraction", "0"], "--decay-fraction must be in (0, 1] (got 0.0)"),
        (["--decay-fraction", "1.5"], "--decay-fraction must be in (0, 1] (got 1.5)"),
        (["--decay-fraction", "nan"], "--decay-fraction must be a finite number (got nan)"),
    ],
)
def test_schedule_options_are_validated(args, message):
    with pytest.raises(config.ConfigError) as e:
        config.parse(["--shards", "s", *args])
    assert message in str(e.value)


def test_wsd_warmup_into_decay_is_refused(shards, tmp_path, capsys):
    code, err = run_inline([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "4",
                            "--lr-schedule", "wsd", "--warmup-steps", "4",
                            "--out", str(tmp_path)], capsys)  # fmt: skip
    assert code == 1
    assert err.strip() == (
        "error (rank 0): --warmup-steps 4 runs into the wsd decay (--decay-fraction 0.2 of "
        "4 steps starts at step 3): lower one of them"
    )


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "wsd"])
def test_resume_is_exact_in_every_schedule(shards, tmp_path, capsys, kind):
    """Stopped at step 3 and resumed: the lr of every step and the final weights are those of
    the uninterrupted run."""
    base = [*COMMON, "--shards", str(shards["clm"]), "--max-steps", "6", "--lr-schedule", kind,
            "--decay-fraction", "0.5", "--min-lr-ratio", "0.1"]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_inline([*base, "--out", str(full)], capsys)[0] == 0
    assert run_inline([*base, "--out", str(cut), "--halt-at-step", "3"], capsys)[0] == 0
    assert run_inline([*base, "--out", str(cut)], capsys)[0] == 0
    reference = [r for r in metrics(full) if "lr" in r]
    cfg = config.parse(base)
    assert [r["lr"] for r in reference] == [schedule.lr_at(s, cfg, 6) for s in range(6)]
    assert without_wall_clock(metrics(cut)) == without_wall_clock(metrics(full))
    assert_same_weights(final_weights(cut), final_weights(full))


# --- data mixtures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        (
            ["a:0.7", "b"],
            "--shards b: give every shard set a weight when mixing several (--shards DIR:WEIGHT)",
        ),
        (["a:0", "b:1"], "--shards a:0: the weight must be a positive finite number"),
        (["a:-1", "b:1"], "--shards a:-1: the weight must be a positive finite number"),
        (["a:inf", "b:1"], "--shards a:inf: the weight must be a positive finite number"),
        (["a:nan", "b:1"], "--shards a:nan: the weight must be a positive finite number"),
        (["a:1", "a/:1"], "--shards a/:1: a/ is given twice"),
    ],
)
def test_mixture_weights_are_validated(shards, message):
    argv = [x for spec in shards for x in ("--shards", spec)]
    with pytest.raises(config.ConfigError) as e:
        config.parse(argv)
    assert str(e.value) == message


def test_mixture_specs_are_normalised_and_one_set_stays_as_today():
    assert mixture.parse_specs(("en:7", "ko:3")) == [
        mixture.ShardSpec("en", 0.7),
        mixture.ShardSpec("ko", 0.3),
    ]
    assert mixture.parse_specs(("shards/",)) == [mixture.ShardSpec("shards/", 1.0)]
    cfg = config.TrainConfig.from_dict({"shards": "shards/"})  # config.json of older runs
    assert cfg.data.shards == ("shards/",)


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_mixture_plan_shares_ranks_and_realised_weights(world_size):
    weights = [0.5, 0.3, 0.2]
    rows = [50, 7, 1000]
    plan = mixture.MixturePlan(
        rows, weights, world_size=world_size, grad_accum=8 // world_size, micro_batch=3, seed=5
    )
    g = plan.global_batch
    one_rank = mixture.MixturePlan(rows, weights, world_size=1, grad_accum=8, micro_batch=3, seed=5)
    seen = [[] for _ in rows]
    for step in range(40):
        counts = plan.step_counts(step)
        assert counts.sum() == g and (counts >= 0).all()
        per_rank = [plan.micro_batches(step, r).reshape(-1, 3) for r in range(world_size)]
        assert {len(k) for k in per_rank} == {g // world_size}  # equal shares, no fillers
        for i in range(len(rows)):  # each set's rows are spread over the ranks within one
            mine = [int((k[:, 0] == i).sum()) for k in per_rank]
            assert max(mine) - min(mine) <= 1
        keys = np.concatenate(per_rank)
        # Another number of ranks, the same --global-batch: the same rows at every step.
        assert sorted(map(tuple, keys.tolist())) == sorted(
            map(tuple, one_rank.step_slots(step).tolist())
        )
        for i in range(len(rows)):
            seen[i] += keys[keys[:, 0] == i][:, 1:].tolist()
        # At every step boundary, each set is within one row of its exact share.
        total = (step + 1) * g
        done = plan.cumulative(total)
        assert np.abs(done - np.array(weights) * total).max() < 1
    # Each set is read epoch after epoch, each epoch a permutation of its rows.
    for i, n in enumerate(rows):
        by_epoch: dict[int, list[int]] = {}
        for epoch, row in seen[i]:
            by_epoch.setdefault(epoch, []).append(row)
        for epoch, got in by_epoch.items():
            assert len(set(got)) == len(got) and all(0 <= r < n for r in got)
            if epoch < max(by_epoch):
                assert sorted(got) == list(range(n))
    assert max(e for e, _ in seen[1]) >= 5  # 7 rows at 30% of 960 rows: repeated


def test_mixture_refuses_a_set_below_one_row_per_step():
    with pytest.raises(config.ConfigError) as e:
        mixture.MixturePlan([10, 10], [0.95, 0.05], micro_batch=8, names=["en", "ko"])
    assert str(e.value) == (
        "--shards ko: weight 0.05 gets 0.40 of the 8 rows of a step; every set needs at least "
        "one row per step (raise its weight or --global-batch)"
    )


def test_mixture_refuses_sets_that_do_not_share_tokenizer_or_objective(
    shards, tmp_path, capsys, trained, demo_corpus
):
    code, err = run_inline([*COMMON, "--shards", f"{shards['en']}:1", "--shards",
                            f"{shards['mlm']}:1", "--out", str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 1
    assert err.strip() == (
        f"error (rank 0): --shards: {shards['mlm']} has another objective (mlm) than "
        f"{shards['en']} (clm); mixed sets must share it"
    )
    other = tmp_path / "other-tokenizer"
    dataprep.tokenize(demo_corpus / "kowiki_00.gz", trained[0], other, seq_len=64)
    code, err = run_inline([*COMMON, "--shards", f"{shards['en']}:1", "--shards", f"{other}:1",
                            "--out", str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 1
    assert err.startswith(f"error (rank 0): --shards: {other} has another tokenizer (sha256 ")
    assert f"than {shards['en']} (sha256 " in err and err.count("\n") == 1


def test_mixture_run_logs_its_realised_mixture_and_resumes_exactly(shards, tmp_path, capsys):
    en, ko = shards["en"], shards["ko"]
    rest = ["--max-steps", "8", "--grad-accum", "2", "--log-every", "2", "--eval-rows", "16"]
    base = [*COMMON, "--shards", f"{en}:0.7", "--shards", f"{ko}:0.3", *rest]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_inline([*base, "--out", str(full)], capsys)[0] == 0
    assert run_inline([*base, "--out", str(cut), "--halt-at-step", "3"], capsys)[0] == 0
    code, err = run_inline([*base, "--out", str(cut)], capsys)
    assert code == 0 and f"mixture (metrics mix/<set>): 0 = {en} (weight 0.7" in err
    assert without_wall_clock(metrics(cut)) == without_wall_clock(metrics(full))
    assert_same_weights(final_weights(cut), final_weights(full))

    # The realised mixture, counted from the rows fed (the batches' `source`), against the
    # weights: within one row of 0.7 x 64 and 0.3 x 64 over the run.
    lines = [r for r in metrics(full) if "loss" in r]
    assert [r["step"] for r in lines] == [2, 4, 6, 8]
    rows = 2 * 8  # steps per line x global batch
    for i, weight in enumerate([0.7, 0.3]):
        fed = sum(r[f"mix/{i}"] * rows for r in lines)
        assert abs(fed - weight * 64) <= 1, (i, fed)
    final = metrics(full)[-1]
    assert {"eval_loss", "eval_loss/0", "eval_loss/1"} <= final.keys()
    assert min(final["eval_loss/0"], final["eval_loss/1"]) <= final["eval_loss"]
    assert final["eval_loss"] <= max(final["eval_loss/0"], final["eval_loss/1"])
    # A mixture's checkpoint records its sets: resuming with other weights is refused.
    other = ["--shards", f"{en}:0.6", "--shards", f"{ko}:0.4"]
    code, err = run_inline([*COMMON, *other, *rest, "--max-steps", "9", "--out", str(cut)], capsys)
    assert code == 1 and "--shards (mixture): the checkpoint was trained with" in err


def test_mixture_on_two_ranks_trains_on_the_rows_of_one_rank(shards, tmp_path, capsys):
    """2 gloo ranks x 1 micro-batch and 1 rank x 2 micro-batches of the same mixture (same
    global batch): every rank gets its equal share of the same rows, so the runs log the same
    realised mixture and the same losses."""
    import os
    import subprocess

    from faultkit import trainer_cmd

    mix = [*COMMON, "--shards", f"{shards['en']}:0.6", "--shards", f"{shards['ko']}:0.4",
           "--max-steps", "4", "--global-batch", "8", "--eval-rows", "16"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_inline([*mix, "--out", str(one)], capsys)[0] == 0
    proc = subprocess.run(trainer_cmd([*mix, "--out", str(two)], 2), capture_output=True,
                          text=True, env={**os.environ, **TRAINER_ENV}, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for a, b in zip(metrics(one), metrics(two), strict=True):
        assert a["step"] == b["step"]
        for key in ("loss", "eval_loss", "eval_loss/0", "eval_loss/1", "mix/0", "mix/1"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_mixture_batches_hold_the_rows_of_their_sets(shards):
    sets = [dataprep.ShardSet(shards["en"]), dataprep.ShardSet(shards["ko"])]
    plan = mixture.MixturePlan([s.num_rows for s in sets], [0.5, 0.5], grad_accum=2,
                               micro_batch=4, seed=3)  # fmt: skip
    loader = mixture.make_loader(sets, plan, rank=0, start_step=5)
    first = next(iter(loader))
    keys = plan.micro_batches(5, 0)[0]
    assert first[mixture.SOURCE].tolist() == keys[:, 0].tolist()
    assert first["sample_index"].tolist() == keys[:, 2].tolist()
    for j, (i, _, row) in enumerate(keys.tolist()):
        ids = sets[i].gather([row], ["input_ids"])["input_ids"][0]
        assert first["input_ids"][j].tolist() == ids.tolist()


# --- continued pretraining ----------------------------------------------------------------


def make_trainer(args: list[str]) -> trainer.Trainer:
    from train import distributed

    cfg = config.parse(args)
    return trainer.Trainer(cfg, distributed.Dist(0, 1, 0, 1, torch.device("cpu")))


def source_model(run: Path) -> torch.nn.Module:
    state = checkpoint.load(checkpoint.latest(run))
    m = model.build_model(model.ModelConfig.from_dict(state["model_config"]))
    m.load_state_dict(state["model"])
    return m.eval()


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_export_then_init_from_gives_the_same_logits(shards, tmp_path, capsys, objective):
    """`--export-hf` then `--init-from RUN/hf` (GPT2LMHeadModel, BertForMaskedLM), and
    `--init-from RUN` (our checkpoint): the new run starts with the trained run's weights."""
    data_args = [*COMMON, "--shards", str(shards[objective])]
    run = tmp_path / "first"
    code, _ = run_inline([*data_args, "--max-steps", "2", "--export-hf", "--out", str(run)], capsys)
    assert code == 0
    arch = json.loads((run / "hf" / "config.json").read_text())["architectures"]
    assert arch == ["GPT2LMHeadModel" if objective == "clm" else "BertForMaskedLM"]
    source = source_model(run)
    ids = torch.randint(5, 500, (2, 64))
    for k, init in enumerate([run / "hf", run]):
        t = make_trainer([*data_args, "--max-steps", "3", "--init-from", str(init),
                          "--out", str(tmp_path / f"next{k}")])  # fmt: skip
        assert t.step == 0 and any("initialised from" in n for n in t.resume_notes)
        assert_same_weights(t.model.state_dict(), source.state_dict())
        t.model.eval()
        with torch.no_grad():
            assert torch.equal(t.model.logits(ids), source.logits(ids))


def test_init_from_refuses_what_does_not_fit(shards, tmp_path, capsys):
    run = tmp_path / "first"
    clm = [*COMMON, "--shards", str(shards["clm"])]
    assert run_inline([*clm, "--max-steps", "1", "--export-hf", "--out", str(run)], capsys)[0] == 0

    def refusal(args: list[str]) -> str:
        code, err = run_inline([*args, "--max-steps", "2", "--out", str(tmp_path / "r")], capsys)
        assert code == 1 and err.count("\n") == 1, err
        return err.strip().removeprefix("error (rank 0): ")

    mini = [*clm[:1], "mini", *clm[2:]]  # --model mini
    assert refusal([*mini, "--init-from", str(run / "hf")]).startswith(
        f"--init-from {run / 'hf'}: another model than this run's: n_embd 64 (this run: 256)"
    )
    assert refusal([*mini, "--init-from", str(run)]).startswith(
        f"--init-from {checkpoint.latest(run)}: saved for another model: n_layer 2 (this run: 4)"
    )
    mlm = [*COMMON, "--shards", str(shards["mlm"])]
    assert refusal([*mlm, "--init-from", str(run / "hf")]) == (
        f"--init-from {run / 'hf'}: a GPT2LMHeadModel cannot start a bert run (the shards' objective)"
    )
    assert refusal([*clm, "--init-from", str(tmp_path / "nowhere")]) == (
        f"--init-from {tmp_path / 'nowhere'}: expected a checkpoint (meta.json, state.pt), a run "
        "directory (checkpoints/) or a transformers directory (config.json); it does not exist"
    )


# --- what people watch --------------------------------------------------------------------


def test_tensorboard_profiler_and_plot(shards, tmp_path, capsys):
    """One run with --tensorboard (loss, lr, grad norm, tokens/s, MFU, data-wait share in the
    events) and --profile-steps (a Chrome trace of steps 1..2), drawn by train.plot beside a
    second run."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "watched"
    code, err = run_inline([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "4",
                            "--tensorboard", "--peak-tflops", "1", "--profile-steps", "1:3",
                            "--out", str(run)], capsys)  # fmt: skip
    assert code == 0, err
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "mfu", "data_wait", "eval_loss"} <= tags
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]
    assert [e.value for e in events.Scalars("lr")] == pytest.approx(
        [r["lr"] for r in metrics(run) if "lr" in r]
    )

    trace = run / "profile" / "trace-rank0-steps1-3.json"
    events_in_trace = json.loads(trace.read_text())["traceEvents"]
    assert any("aten::" in str(e.get("name", "")) for e in events_in_trace)
    assert not list((run / "profile").glob("*.tmp-*"))

    from train import plot

    other = tmp_path / "other"
    assert run_inline([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "3",
                       "--lr-schedule", "constant", "--out", str(other)], capsys)[0] == 0  # fmt: skip
    png = tmp_path / "curves.png"
    assert plot.main([str(run), str(other), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert (width, height) == (1600, 450)
    assert plot.main([str(tmp_path / "none"), "--out", str(png)]) == 1
    assert "none/metrics.jsonl: cannot read" in capsys.readouterr().err


def wandb_history(run_file: Path) -> list[dict]:
    """The history rows (`run.log` calls) of an offline W&B run, read from its `.wandb` file:
    W&B's record log (a 7-byte header, then 32 KiB blocks of records each with a 7-byte header:
    CRC-32, length, kind: full / first / middle / last), each record a `wandb_internal_pb2.Record`.
    wandb 0.31 has no Python reader of its own (its Go core writes and reads the file)."""
    import struct
    import zlib

    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, rows, parts = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += block - pos % block
            continue
        payload = data[pos + 7 : pos + 7 + length]
        assert zlib.crc32(payload, zlib.crc32(bytes([kind]))) == crc, pos
        pos += 7 + length
        parts = payload if kind == 1 or kind == 2 else parts + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                             for i in record.history.item})  # fmt: skip
    return rows


def test_wandb_offline_run_holds_the_metrics(shards, tmp_path, capsys, monkeypatch):
    """One run with --wandb in offline mode (no network, everything under tmp_path): the W&B
    history holds each metrics line's loss, lr, grad norm, tokens/s, MFU and data-wait share,
    at the line's step, with the values of metrics.jsonl."""
    pytest.importorskip("wandb")
    for key, sub in [("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_ARTIFACT_DIR", "artifacts")]:  # fmt: skip
        monkeypatch.setenv(key, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "recipes")
    run = tmp_path / "watched"
    code, err = run_inline([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "4",
                            "--wandb", "--peak-tflops", "1", "--out", str(run)], capsys)  # fmt: skip
    assert code == 0, err
    (run_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    history = wandb_history(run_file)
    logged = [r for r in metrics(run) if "loss" in r]
    assert [r["_step"] for r in history] == [r["step"] for r in logged] == [1, 2, 3, 4]
    fields = ["loss", "lr", "grad_norm", "tokens_per_s", "mfu", "data_wait"]
    for row, line in zip(history, logged, strict=True):
        assert {f: row[f] for f in fields} == pytest.approx({f: line[f] for f in fields})


def test_wandb_and_tensorboard_are_refused_when_not_installed(
    shards, tmp_path, capsys, monkeypatch
):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("wandb", "tensorboard") else find_spec(name, *a),
    )
    for option in ("--wandb", "--tensorboard"):
        code, err = run_inline([*COMMON, "--shards", str(shards["clm"]), "--max-steps", "1",
                                option, "--out", str(tmp_path / "r")], capsys)  # fmt: skip
        package = option[2:]
        assert (code, err) == (
            1,
            f"error (rank 0): {option} needs the `{package}` package, which is not installed "
            f"(pip install {package} or 'dataprep[watch]')\n",
        )
    assert not (tmp_path / "r" / "metrics.jsonl").exists()  # refused before anything ran


@pytest.mark.parametrize("spec", ["3", "3:3", "a:b", "-1:2", "2:1"])
def test_profile_steps_are_validated(spec):
    with pytest.raises(config.ConfigError) as e:
        config.parse(["--shards", "s", f"--profile-steps={spec}"])
    assert str(e.value) == f"--profile-steps must be A:B with integers 0 <= A < B (got {spec!r})"
