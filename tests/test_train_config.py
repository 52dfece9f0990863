"""The trainer's configuration: every option declared once with its help, default and bounds;
`--help`, TOML files, `config.json` and validation all built from that declaration."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from train import config
from train.config import OPTIONS, SECTIONS, ConfigError


def test_every_option_has_help_and_numbers_have_bounds():
    # Walks the dataclasses themselves (not OPTIONS), so a field added without `opt(..., help)`
    # fails here by name.
    names = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            names.append(f.name)
            assert f.metadata.get("help"), f"[{section}] {f.name} has no help"
            if OPTIONS[f.name].kind in (int, float):
                low = f.metadata["ge"] if f.metadata["ge"] is not None else f.metadata["gt"]
                assert low is not None, f"[{section}] {f.name} has no lower bound"
    assert len(names) == len(set(names)) and set(names) == set(OPTIONS)


def _help_entries(text: str) -> dict[str, str]:
    """`--help` option entries: first flag -> its text (flags, metavar and help), one line."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current is not None and line.startswith("    "):
            entries[current] += " " + line
        else:
            current = None
    return {flag: " ".join(body.split()) for flag, body in entries.items()}


def test_help_shows_every_option_with_its_help_and_default():
    text = config.build_parser().format_help()
    entries = _help_entries(text)
    for option in OPTIONS.values():
        entry = entries[option.flag]
        shown = "required" if option.required else f"default: {config._show(option.default)}"
        assert entry.endswith(f"({shown})"), entry
        assert " ".join(option.help.split()) in entry
        assert "(default: )" not in entry
    assert entries["--shards"].endswith("(required)")
    assert "--no-shuffle" in entries["--shuffle"]
    for section in SECTIONS:
        assert f"\n{section}:\n" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--micro-batch", "0"], "--micro-batch must be at least 1 (got 0)"),
        (["--micro-batch", "-3"], "--micro-batch must be at least 1 (got -3)"),
        (["--micro-batch", "x"], "argument --micro-batch: expected an integer, got 'x'"),
        (["--max-steps", "0"], "--max-steps must be at least 1 (got 0)"),
        (["--warmup-steps", "-1"], "--warmup-steps must be at least 0 (got -1)"),
        (["--keep-last", str(2**40)], "--keep-last must be at most 2147483647"),
        (["--seed", "-1"], "--seed must be in [0, 4294967295] (got -1)"),
        (["--lr", "0"], "--lr must be greater than 0 (got 0.0)"),
        (["--lr", "nan"], "--lr must be a finite number (got nan)"),
        (["--lr", "inf"], "--lr must be a finite number (got inf)"),
        (["--lr", "1e999"], "--lr must be a finite number (got inf)"),
        (["--dropout", "1"], "--dropout must be in [0, 1) (got 1.0)"),
        (["--beta2", "1.5"], "--beta2 must be in [0, 1) (got 1.5)"),
        (["--mask-probability", "0"], "--mask-probability must be in (0, 1) (got 0.0)"),
        (["--span-p", "0"], "--span-p must be in (0, 1] (got 0.0)"),
        (["--peak-tflops", "-1"], "--peak-tflops must be greater than 0 (got -1.0)"),
        (["--mask-replace", "0.9", "--random-replace", "0.2"], "must sum to at most 1"),
        (["--mask-strategy", "dice"], "argument --mask-strategy: invalid choice: 'dice'"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--learning-rate", "1"], "unrecognized arguments: --learning-rate"),
        (["--micro", "4"], "unrecognized arguments: --micro"),  # no prefix guessing
        (["--max-steps"], "argument --max-steps: expected one argument"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_option(argv, message):
    with pytest.raises(ConfigError) as e:
        config.parse(["--shards", "s", *argv])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_numeric_option_is_bounded():
    for option in OPTIONS.values():
        if option.kind not in (int, float):
            continue
        low = option.ge if option.ge is not None else option.gt
        high = option.le if option.le is not None else option.lt
        values = [low - 1 if option.gt is None else low]
        if option.kind is int:
            values = [int(v) for v in [*values, (high or config.INT_MAX) + 1]]
        else:  # floats: finite, and below their upper bound when they have one
            values += [math.nan, math.inf, -math.inf] + ([high + 1] if high is not None else [])
        for value in values:
            with pytest.raises(ConfigError, match=re.escape(option.flag) + " must be"):
                config.parse(["--shards", "s", f"{option.flag}={value}"])


def test_shards_is_required_and_none_resets_optional_numbers(tmp_path):
    with pytest.raises(ConfigError, match="--shards is required"):
        config.parse([])
    toml = tmp_path / "run.toml"
    toml.write_text('shards = "s"\neval_rows = 8\n')
    assert config.parse(["--config", str(toml)]).logging.eval_rows == 8
    assert config.parse(["--config", str(toml), "--eval-rows", "none"]).logging.eval_rows is None
    toml.write_text('shards = "s"\neval_rows = "none"\n')  # TOML has no null
    assert config.parse(["--config", str(toml)]).logging.eval_rows is None
    toml.write_text('shards = "s"\nepochs = "none"\n')
    with pytest.raises(ConfigError, match=r"epochs must be an integer \(got 'none'\)"):
        config.parse(["--config", str(toml)])


def test_toml_flat_or_in_sections(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('shards = "s"\nmicro_batch = 4\nlr = 1\nmask_strategy = "span"\n')
    sectioned = tmp_path / "sections.toml"
    sectioned.write_text(
        '[data]\nshards = "s"\n[batch]\nmicro_batch = 4\n[optim]\nlr = 1.0\n'
        '[masking]\nmask_strategy = "span"\n'
    )
    a = config.parse(["--config", str(flat)])
    assert a == config.parse(["--config", str(sectioned)])
    assert (a.batch.micro_batch, a.optim.lr, a.masking.mask_strategy) == (4, 1.0, "span")
    assert isinstance(a.optim.lr, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate = 1\n", r"unknown keys \['learning_rate'\]"),
        ("[optim]\nlearning_rate = 1\n", r"unknown keys \['optim.learning_rate'\]"),
        ("[batch]\nlr = 1\n", r"unknown keys \['batch.lr'\]"),  # lr belongs to [optim]
        ("[trainer]\nlr = 1\n", r"unknown keys \['trainer'\]"),
        ('micro_batch = "8"\n', r"micro_batch must be an integer \(got '8'\)"),
        ("micro_batch = 8.0\n", r"micro_batch must be an integer \(got 8.0\)"),
        ("shuffle = 1\n", r"shuffle must be true or false \(got 1\)"),
        ('lr = "fast"\n', r"lr must be a number \(got 'fast'\)"),
        ('mask_strategy = "dice"\n', r"mask_strategy must be one of 'bernoulli', "),
        ("optim = 1\n", r"optim must be a table"),
        ("lr = 1\n[optim]\nlr = 2\n", r"lr is given twice"),
        ("lr = \n", r"not valid TOML"),
    ],
)
def test_bad_toml_is_an_error_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": .*" + message):
        config.parse(["--shards", "s", "--config", str(path)])


def test_bad_toml_values_are_checked_like_the_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('shards = "s"\nlr = nan\n')
    with pytest.raises(ConfigError, match=r"--lr must be a finite number \(got nan\)"):
        config.parse(["--config", str(path)])
    with pytest.raises(ConfigError, match="config file not found"):
        config.parse(["--config", str(tmp_path / "nope.toml")])


def test_config_json_round_trip_and_old_flat_layout():
    cfg = config.parse(["--shards", "s", "--lr", "0.01", "--no-shuffle", "--eval-rows", "none"])
    saved = json.loads(json.dumps(cfg.to_dict()))
    assert list(saved) == list(SECTIONS) and saved["optim"]["lr"] == 0.01
    assert config.TrainConfig.from_dict(saved) == cfg
    # config.json and checkpoints of runs saved before the sections: one flat object.
    flat = {key: value for section in saved.values() for key, value in section.items()}
    assert config.TrainConfig.from_dict(flat) == cfg
    with pytest.raises(ConfigError, match=r"run/config.json: unknown keys \['optim.lr_max'\]"):
        config.TrainConfig.from_dict({**saved, "optim": {"lr_max": 1}}, "run/config.json")


def _values(option: config.Option) -> st.SearchStrategy:
    """Any value the option accepts."""
    if option.multiple:  # --shards: one directory, or several with weights
        names = st.lists(st.text("abcdefgh", min_size=1), min_size=1, max_size=3, unique=True)
        return names.map(
            lambda ps: (
                tuple(ps) if len(ps) == 1 else tuple(f"{p}:{i + 1}" for i, p in enumerate(ps))
            )
        )
    if option.name == "profile_steps":
        ranges = st.tuples(st.integers(0, 100), st.integers(1, 100))
        return st.none() | ranges.map(lambda r: f"{r[0]}:{r[0] + r[1]}")
    if option.choices is not None:
        base: st.SearchStrategy = st.sampled_from(option.choices)
    elif option.kind is bool:
        base = st.booleans()
    elif option.kind is int:
        low = option.ge if option.ge is not None else option.gt + 1
        high = option.le if option.le is not None else config.INT_MAX
        base = st.integers(int(low), int(high))
    elif option.kind is float:
        base = st.floats(
            min_value=option.ge if option.ge is not None else option.gt,
            max_value=option.le if option.le is not None else option.lt,
            exclude_min=option.ge is None,
            exclude_max=option.le is None and option.lt is not None,
            allow_nan=False,
            allow_infinity=False,
        )
    else:
        base = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1)
    return st.none() | base if option.optional else base


@settings(max_examples=30, deadline=None)
@given(st.fixed_dictionaries({name: _values(option) for name, option in OPTIONS.items()}))
def test_command_line_toml_and_json_agree(tmp_path_factory, values):
    m = values["mask_replace"], values["random_replace"]
    assume(m[0] + m[1] <= 1)
    assume(values["parallel"] == "fsdp" or not values["async_checkpoint"])  # refused otherwise
    cfg = config.TrainConfig.from_dict(values)
    assert config.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    argv = []
    for name, value in values.items():
        flag = OPTIONS[name].flag
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):  # a repeated option
            argv += [f"{flag}={v}" for v in value]
        elif value is None:
            argv += [] if OPTIONS[name].kind in (bool, str) else [f"{flag}=none"]
        else:
            argv.append(f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}")
    assert config.parse(argv) == cfg
    # The same values in a sectioned TOML file. TOML has no null: optional numbers take "none",
    # and the other options whose default is None are left out.
    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            value = values[f.name]
            if value is None and OPTIONS[f.name].kind in (int, float):
                value = "none"
            if value is not None:
                lines.append(f"{f.name} = {json.dumps(value, ensure_ascii=False)}")
    path = tmp_path_factory.mktemp("toml") / "run.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert config.parse(["--config", str(path)]) == cfg


# --- `python -m train` itself: errors are one line on stderr, never a traceback -----------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("torch")  # `python -m train` imports the trainer
    env = {**os.environ, "COLUMNS": "100", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "train", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_cli_help():
    proc = _run("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    entries = _help_entries(proc.stdout)
    assert set(entries) == {"-h", "--config"} | {o.flag for o in OPTIONS.values()}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--micro-batch", "0"], "--micro-batch must be at least 1 (got 0)"),
        (["--lr", "nan"], "--lr must be a finite number (got nan)"),
        (["--eps=-inf"], "--eps must be a finite number (got -inf)"),
        (["--mask-strategy", "dice"], "invalid choice: 'dice'"),
        (["--config", "TOML"], "unknown keys ['learning_rate']"),
    ],
)
def test_cli_bad_values(tmp_path: Path, argv, message):
    toml = tmp_path / "bad.toml"
    toml.write_text("learning_rate = 1\n")
    argv = [str(toml) if a == "TOML" else a for a in argv]
    proc = _run("--shards", str(tmp_path), *argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and proc.stdout == ""
