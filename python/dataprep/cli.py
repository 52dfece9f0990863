"""The `dataprep` command line: options -> library call -> rich output. No logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

import dataprep
from dataprep import _core
from dataprep.bpe import tiktoken_paths, train_bpe
from dataprep.jobs import run_job

console = Console(stderr=True)

CORPUS_OPTIONS = [
    click.option(
        "--format",
        "fmt",
        type=click.Choice(["auto", "wiki", "text", "jsonl", "parquet"]),
        default="auto",
        show_default=True,
        help="Input format; auto: by extension, else WikiExtractor if the file starts with <doc.",
    ),
    click.option(
        "--text-unit",
        type=click.Choice(["file", "paragraph"]),
        default="file",
        show_default=True,
        help="Plain text: one document per file or per blank-line separated paragraph.",
    ),
    click.option("--jsonl-field", default="text", show_default=True, help="JSONL text field."),
    click.option("--parquet-column", default="text", show_default=True, help="Parquet column."),
    click.option(
        "--invalid-utf8",
        type=click.Choice(["replace", "skip", "error"]),
        default="replace",
        show_default=True,
        help="Invalid UTF-8 in a document: replace with U+FFFD, skip the document, or stop.",
    ),
]


def corpus_options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(CORPUS_OPTIONS):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(dataprep.__version__, prog_name="dataprep")
def main() -> None:
    """Tokenizer training and data preparation for language-model pretraining."""


def fail(message: str) -> None:
    # Text, not markup: messages quote user input such as "[MASK]".
    console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(1)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


@main.command("train-bpe")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--vocab-size", type=int, default=32000, show_default=True, help="Total ids.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("tokenizer.json"), show_default=True
)
@click.option(
    "--pattern",
    default="gpt2",
    show_default=True,
    help="Split pattern: gpt2, cl100k, o200k, or a regex.",
)
@click.option(
    "--special-token",
    "special_tokens",
    multiple=True,
    help="A special token (repeatable); ids 0..k-1 in order. E.g. --special-token '<|endoftext|>'.",
)
@click.option("--min-frequency", type=int, default=2, show_default=True)
@click.option("--max-token-length", type=int, default=None, help="Longest token in bytes.")
@click.option("--threads", type=int, default=None, help="Worker threads [default: all cores].")
@click.option(
    "--holdout-every",
    type=int,
    default=100,
    show_default=True,
    help="Hold back every n-th document to measure bytes per token (0: none).",
)
@click.option("--tiktoken/--no-tiktoken", default=True, show_default=True)
@corpus_options
def train_bpe_cmd(
    inputs: tuple[Path, ...],
    vocab_size: int,
    out: Path,
    pattern: str,
    special_tokens: tuple[str, ...],
    min_frequency: int,
    max_token_length: int | None,
    threads: int | None,
    holdout_every: int,
    tiktoken: bool,
    fmt: str,
    text_unit: str,
    jsonl_field: str,
    parquet_column: str,
    invalid_utf8: str,
) -> None:
    """Train a byte-level BPE tokenizer on INPUTS (files or directories)."""
    try:
        tok, stats = run_job(
            console,
            lambda progress: train_bpe(
                inputs,
                vocab_size,
                out=out,
                tiktoken=tiktoken,
                pattern=pattern,
                special_tokens=special_tokens,
                min_frequency=min_frequency,
                max_token_length=max_token_length,
                threads=threads,
                holdout_every=holdout_every,
                format=fmt,
                text_unit=text_unit,
                jsonl_field=jsonl_field,
                parquet_column=parquet_column,
                invalid_utf8=invalid_utf8,
                progress=progress,
            ),
        )
    except (_core.DataprepError, ValueError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written")

    table = Table(title="train-bpe", show_header=False, title_justify="left")
    secs = stats["total_seconds"]
    rows = [
        ("input", f"{stats['files']:,} files, {human_bytes(stats['bytes'])}"),
        ("documents", f"{stats['documents']:,}"),
        ("skipped", skipped_text(stats)),
        ("unique words", f"{stats['unique_words']:,}"),
        ("vocab size", f"{stats['vocab_size']:,} ({stats['merges']:,} merges)"),
        (
            "time",
            f"{secs:.2f} s (read+count {stats['read_count_seconds']:.2f} s, "
            f"merge {stats['merge_seconds']:.2f} s, {stats['threads']} threads)",
        ),
        ("throughput", f"{stats['bytes'] / max(secs, 1e-9) / 1e6:.1f} MB/s"),
    ]
    if stats["holdout_tokens"]:
        bpt = stats["holdout_bytes"] / stats["holdout_tokens"]
        rows.append(
            (
                "bytes/token",
                f"{bpt:.3f} on {stats['holdout_documents']:,} held-back documents "
                f"({human_bytes(stats['holdout_bytes'])})",
            )
        )
    written = [str(out)]
    if tiktoken:
        written += [str(p) for p in tiktoken_paths(out)]
    rows.append(("wrote", ", ".join(written)))
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def skipped_text(stats: dict[str, int]) -> str:
    parts = [
        f"{stats['empty_skipped']:,} empty",
        f"{stats['invalid_utf8_skipped']:,} invalid UTF-8",
    ]
    if stats["invalid_utf8_replaced"]:
        parts.append(f"{stats['invalid_utf8_replaced']:,} with invalid UTF-8 replaced")
    return ", ".join(parts)


if __name__ == "__main__":
    main()
