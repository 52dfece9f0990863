"""One version: rust/Cargo.toml's, seen by the package metadata, `dataprep.__version__` and
`dataprep --version` alike."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

import dataprep
from dataprep import cli

CARGO_TOML = Path(__file__).parents[1] / "rust" / "Cargo.toml"


def test_version_is_cargo_version() -> None:
    cargo = tomllib.loads(CARGO_TOML.read_text())["package"]["version"]
    assert dataprep.__version__ == cargo
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"dataprep, version {cargo}\n"
