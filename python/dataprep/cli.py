"""The `dataprep` command line: options -> library call -> rich output. No logic lives here.

The flags of `train-bpe`, `tokenize` and `dedup` are built from the options schema of the Rust
core (`dataprep.options`), the one definition of every option; only the flags the user gives are
passed on, so the core can refuse one that does not apply instead of ignoring it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

import dataprep
from dataprep import _core, storage
from dataprep.bpe import train_bpe
from dataprep.dedup import banding, dedup
from dataprep.export import FORMATS, MDS_SHARD_BYTES, ExportError, export
from dataprep.hf_tokenizer import ROLES, write_transformers_dir
from dataprep.jobs import run_job
from dataprep.options import click_options, defaults, given
from dataprep.ray_engine import (
    EngineOptions,
    RayEngineError,
    RayTokenize,
    RayTrainBpe,
    Unit,
    UnitRun,
    UnitsDone,
    cluster_summary,
    connect,
    engine_of,
    engine_options,
    work_lock,
)
from dataprep.shard_cache import ShardCache
from dataprep.shards import Manifest, ShardSet
from dataprep.tokenize import tokenize

console = Console(stderr=True)

T = TypeVar("T")


def run_or_fail(job: Callable[[_core.Progress], T], interrupted: str) -> T:
    """Runs a library call with progress; a bad input or Ctrl-C becomes a one-line error."""
    try:
        return run_job(console, job)
    except (_core.DataprepError, ValueError, TypeError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(interrupted)


def engine_or_fail(command: str, values: dict[str, Any]) -> EngineOptions:
    """Takes the engine flags (`--engine`, `--address`, ...) out of `values`, checked."""
    try:
        return engine_of(command, click.get_current_context(), values)
    except RayEngineError as e:
        fail(str(e))


def options_of(command: str, values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave to `command`, checked by the core before anything runs."""
    opts = given(command, click.get_current_context(), values)
    try:
        _core.check_options(command, **opts)
    except (_core.DataprepError, ValueError, TypeError) as e:
        fail(str(e))
    return opts


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(dataprep.__version__, prog_name="dataprep")
def main() -> None:
    """Tokenizer training and data preparation for language-model pretraining."""


def fail(message: str) -> NoReturn:
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
@click_options("train-bpe")
@engine_options
def train_bpe_cmd(**values: Any) -> None:
    """Train a byte-level BPE tokenizer on INPUTS (files or directories)."""
    engine = engine_or_fail("train-bpe", values)
    opts = options_of("train-bpe", values)
    t0 = time.perf_counter()
    if engine.engine == "ray":
        stats = train_bpe_on_ray(opts, engine)
        # The core's times are the merge's on this machine: the run's is the wall time.
        stats["total_seconds"] = time.perf_counter() - t0
    else:
        _, stats = run_or_fail(
            lambda progress: train_bpe(opts.pop("inputs"), progress=progress, **opts),
            "interrupted; nothing was written",
        )

    table = Table(title="train-bpe", show_header=False, title_justify="left")
    secs = stats["total_seconds"]
    rows = [
        ("input", f"{stats['files']:,} files, {human_bytes(stats['bytes'])}"),
        ("documents", f"{stats['documents']:,}"),
        ("skipped", skipped_text(stats)),
        *read_notes(stats),
        ("unique words", f"{stats['unique_words']:,}"),
        ("vocab size", f"{stats['vocab_size']:,} ({stats['merges']:,} merges)"),
        (
            "time",
            f"{secs:.2f} s (read+count {stats['read_count_seconds']:.2f} s, "
            f"merge {stats['merge_seconds']:.2f} s, {stats['threads']} threads)"
            if engine.engine == "local"
            else f"{secs:.2f} s (on the cluster: the units and merge lines above)",
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
    rows.append(("wrote", ", ".join(str(p) for p in stats["outputs"])))
    for k, v in rows:
        table.add_row(k, Text(v, overflow="fold"))  # paths are never cut
    Console().print(table)


def train_bpe_on_ray(opts: dict[str, Any], engine: EngineOptions) -> dict[str, Any]:
    """`train-bpe --engine ray`: plan, the units' counts on the cluster (after their documents,
    with --holdout-every), then the merge here with the local engine's progress."""
    try:
        run = RayTrainBpe(opts.pop("inputs"), engine, **opts)
    except (_core.DataprepError, ValueError, OSError) as e:
        fail(str(e))

    def build(
        progress: _core.Progress, on_unit: Callable[[Unit, bool], None], stop: threading.Event
    ) -> tuple[dict[str, Any], UnitsDone]:
        _, stats, done = run.build(progress, on_unit, stop)
        return stats, done

    stats, secs = on_cluster(run, engine, build, "")
    console.print(
        f"merge: counts summed and tokenizer trained here, done in {secs}",
        highlight=False,
        soft_wrap=True,
    )
    return stats


@main.command("tokenize")
@click_options("tokenize")
@engine_options
def tokenize_cmd(**values: Any) -> None:
    """Tokenize INPUTS into packed Arrow shards in --out (resumable: rerun to continue)."""
    engine = engine_or_fail("tokenize", values)
    opts = options_of("tokenize", values)
    out = opts["out"]
    t0 = time.perf_counter()
    if engine.engine == "ray":
        m = tokenize_on_ray(opts, engine)
    else:
        m = run_or_fail(
            lambda progress: tokenize(
                opts.pop("inputs"),
                opts.pop("tokenizer"),
                opts.pop("out"),
                progress=progress,
                **opts,
            ),
            f"interrupted; finished shards are kept: rerun the same command to resume into {out}",
        )
    secs = time.perf_counter() - t0
    docs = m["documents"]
    table = Table(title=f"tokenize -> {out}", title_justify="left")
    for col in ("split", "documents", "rows", "tokens", "shards", "dropped tokens"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, sp in m["splits"].items():
        table.add_row(
            name,
            f"{sp['documents']:,}",
            f"{sp['rows']:,}",
            f"{sp['tokens']:,}",
            f"{len(sp['shards']):,}",
            f"{sp['dropped_tokens']:,}",
        )
    Console().print(table)
    tokens = sum(sp["tokens"] for sp in m["splits"].values())
    skipped = ", ".join(f"{v:,} {k}" for k, v in docs["skipped"].items())
    skipped += f", {docs['binary_skipped']:,} binary files"
    notes = "".join(f"{name}: {text}; " for name, text in read_notes(docs))
    Console().print(
        f"{docs['read']:,} documents ({human_bytes(docs['bytes'])}) read, skipped: {skipped}; "
        f"{notes}"
        f"seq_len {m['seq_len']}, {m['dtype']}; {secs:.2f} s, "
        f"{docs['bytes'] / max(secs, 1e-9) / 1e6:.1f} MB/s, {tokens / max(secs, 1e-9) / 1e6:.2f}M tokens/s",
        highlight=False,
        soft_wrap=True,  # one line: paths in it are never folded
    )


def tokenize_on_ray(opts: dict[str, Any], engine: EngineOptions) -> dict[str, Any]:
    """`tokenize --engine ray`: plan, then the units on the cluster and the assemble here at
    once (a bar over the units, the local engine's progress for the assemble; a line per stage
    at the end)."""
    out = opts["out"]
    try:
        run = RayTokenize(
            opts.pop("inputs"), opts.pop("tokenizer"), opts.pop("out"), engine, **opts
        )
    except (_core.DataprepError, ValueError, OSError) as e:
        fail(str(e))
    if run.complete:
        console.print(f"{out} is complete: checking it against its manifest", highlight=False)
        return run_or_fail(run.finish_complete, "interrupted; nothing was changed")

    def build(
        progress: _core.Progress, on_unit: Callable[[Unit, bool], None], stop: threading.Event
    ) -> tuple[dict[str, Any], UnitsDone]:
        return run.build(progress, on_unit, stop)

    m, secs = on_cluster(run, engine, build, f" (and finished shards in {out})")
    console.print(
        f"assemble: shards and manifest written here as the units came in, done in {secs}",
        highlight=False,
        soft_wrap=True,
    )
    return m


def on_cluster(
    run: UnitRun,
    engine: EngineOptions,
    build: Callable[
        [_core.Progress, Callable[[Unit, bool], None], threading.Event], tuple[T, UnitsDone]
    ],
    kept: str,
) -> tuple[T, str]:
    """Runs `build` of a `--engine ray` command: a line for the plan and the cluster, a bar over
    the units with the core's progress, a line for the units; returns what `build` returned
    and when it was done (`X s (Y s after the last unit)`)."""
    try:
        with work_lock(run.work, remove=run.remove_work, command=run.command):
            with connect(engine.address):
                console.print(
                    f"plan: {len(run.units):,} unit{'s' * (len(run.units) != 1)} of up to "
                    f"{engine.unit_mb:g} MB from "
                    f"{sum(len(u.files) for u in run.units):,} files ({human_bytes(run.bytes)}); "
                    f"work directory {run.work_name}",
                    highlight=False,
                    soft_wrap=True,
                )
                console.print(f"cluster {engine.address}: {cluster_summary()}", highlight=False)
                t0, encoded = time.perf_counter(), 0
                unit_bar: list[tuple[Progress, Any]] = []
                stop = threading.Event()

                def add_units_bar(bar: Progress) -> None:
                    unit_bar.append((bar, bar.add_task("units", total=len(run.units), rate="")))

                def on_unit(unit: Unit, ran: bool) -> None:
                    nonlocal encoded
                    encoded += unit.bytes if ran else 0
                    rate = encoded / max(time.perf_counter() - t0, 1e-9)
                    for bar, task in unit_bar:
                        bar.update(task, advance=1, rate=f"{human_bytes(rate)}/s")

                result, done = run_job(
                    console,
                    lambda progress: build(progress, on_unit, stop),
                    bars=add_units_bar,
                    on_interrupt=stop.set,
                )
            secs = time.perf_counter() - t0
            run.clean_up()
    except (_core.DataprepError, ValueError, TypeError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(
            f"interrupted; finished units are kept in {run.work_name}{kept}: rerun the same "
            "command to resume"
        )
    last = f" (the last one done in {done.seconds:.1f} s)" if done.ran else ""
    console.print(
        f"units: {done.ran:,} run on the cluster{last}, "
        f"{done.skipped:,} verified from an earlier run",
        highlight=False,
        soft_wrap=True,
    )
    after = f" ({secs - done.seconds:.1f} s after the last unit)" if done.ran else ""
    return result, f"{secs:.1f} s{after}"


@main.command("dedup")
@click_options("dedup")
@engine_options
def dedup_cmd(**values: Any) -> None:
    """Remove exact and near-duplicate documents from INPUTS (files or directories)."""
    engine_or_fail("dedup", values)  # the local engine only, for now
    opts = options_of("dedup", values)
    o = defaults("dedup") | opts
    mode, threshold, num_perm, bands = o["mode"], o["threshold"], o["num_perm"], o["bands"]
    if mode == "near":
        b, r, p = banding(threshold, num_perm, o["verify"])
        if bands is not None:
            b, r = bands
            p = 1 - (1 - threshold**r) ** b
        console.print(
            f"LSH: {b} bands x {r} rows of {num_perm} permutations; a pair at J = {threshold:.2f} "
            f"becomes a candidate with probability {p:.3f}"
            + ("; candidates are verified by exact Jaccard" if o["verify"] else ""),
            highlight=False,
        )
    stats = run_or_fail(
        lambda progress: dedup(opts.pop("inputs"), opts.pop("out"), progress=progress, **opts),
        "interrupted; files already written in the output directory are complete",
    )

    table = Table(title="dedup", show_header=False, title_justify="left")
    secs = stats["total_seconds"]
    docs = stats["documents"]

    def pct(n: int) -> str:
        return f"{n:,} ({100 * n / docs:.2f}%)" if docs else f"{n:,}"

    rows = [
        ("input", f"{stats['files']:,} files, {human_bytes(stats['bytes'])}"),
        ("documents", f"{docs:,}"),
        ("skipped", skipped_text(stats)),
        *read_notes(stats),
        ("exact removed", pct(stats["exact_removed"])),
    ]
    if mode == "near":
        rows += [
            ("near removed", pct(stats["near_removed"])),
            (
                "LSH",
                f"{stats['bands']} bands x {stats['rows']} rows, threshold {threshold:.2f}, "
                f"{o['ngram']}-gram shingles",
            ),
            (
                "pairs",
                f"{stats['candidate_pairs']:,} candidates, {stats['similar_pairs']:,} "
                + ("verified >= threshold" if o["verify"] else "accepted (not verified)"),
            ),
        ]
    rows += [
        ("kept", pct(stats["kept"])),
        ("clusters", f"{stats['clusters']:,}"),
        (
            "time",
            f"{secs:.2f} s (first read {stats['read_seconds']:.2f} s, verify "
            f"{stats['verify_seconds']:.2f} s, find {stats['dedup_seconds']:.2f} s, "
            f"{stats['threads']} threads)",
        ),
        ("throughput", f"{stats['bytes'] / max(secs, 1e-9) / 1e6:.1f} MB/s"),
        ("wrote", f"{o['out']}/ ({len(stats['outputs'])} files, clusters.jsonl, summary.json)"),
    ]
    for k, v in rows:
        table.add_row(k, Text(v, overflow="fold"))  # paths are never cut
    Console().print(table)


@main.command("inspect")
@click.argument("directory")
@click.option("--rows", type=int, default=2, show_default=True, help="Rows to decode and show.")
@click.option("--no-verify", is_flag=True, help="Skip checksum validation.")
def inspect_cmd(directory: str, rows: int, no_verify: bool) -> None:
    """Summarize a shard directory (or its s3:// URL), validate its checksums and decode a few
    rows."""
    try:
        if storage.is_remote(directory):
            # Through the shard cache: verifying downloads every shard (README, Object storage).
            m = ShardCache(directory).manifest
            sets = [ShardSet(directory, split) for split in m.splits]
            problems = [] if no_verify else [p for s in sets for p in s.verify()]
            train = next((s for s in sets if s.split == "train"), None)
            samples = [] if problems or train is None or not len(train) else train.samples(rows)
        else:
            m = Manifest.read(directory)
            problems = [] if no_verify else m.verify()
            # Rows of a directory that failed verification would mean little.
            samples = (
                [] if problems or not m.split_rows("train") else ShardSet(m.path).samples(rows)
            )
    except (_core.DataprepError, ValueError, OSError) as e:
        fail(str(e))
    out = Console()
    table = Table(title=f"{directory}", show_header=False, title_justify="left")
    tok = m.tokenizer
    table.add_row(
        "schema", f"v{m.schema_version}, objective {m.objective}, seq_len {m.seq_len}, {m.dtype}"
    )
    table.add_row(
        "tokenizer",
        f"{tok.file} (vocab {tok.vocab_size:,}, eos {tok.eos_id}, sha256 {tok.sha256[:12]}…)",
    )
    table.add_row(
        "inputs", f"{len(m.inputs):,} files, {human_bytes(sum(i.bytes for i in m.inputs))}"
    )
    for name, sp in m.splits.items():
        table.add_row(
            name,
            f"{len(sp.shards)} shards, {sp.rows:,} rows, {sp.tokens:,} tokens, "
            f"{sp.documents:,} documents",
        )
    table.add_row(
        "checksums",
        "skipped" if no_verify else ("OK" if not problems else f"{len(problems)} problem(s)"),
    )
    out.print(table)
    for shard, row, text in samples:
        out.print(f"[bold]{shard} row {row}:[/] ", end="")
        out.print(Text(text[:300] + ("…" if len(text) > 300 else "")))
    for p in problems:
        console.print(Text(p, style="red"), soft_wrap=True)  # one line each, however long
    if problems:
        sys.exit(1)


@main.command("export")
@click.argument("shards")
@click.option(
    "--format",
    "fmt",
    required=True,
    help=f"Output format: {', '.join(FORMATS)} (see the README, 'Use with other trainers').",
)
@click.option(
    "--out",
    required=True,
    help="Output directory (new or empty), or an s3://bucket/prefix (built locally, then uploaded).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    help="A split to export (repeatable) [default: every split with rows].",
)
@click.option(
    "--mds-shard-bytes",
    type=str,
    help=f"mds: largest shard file in bytes, MDSWriter's size_limit [default: {MDS_SHARD_BYTES}].",
)
def export_cmd(
    shards: str, fmt: str, out: str, splits: tuple[str, ...], mds_shard_bytes: str | None
) -> None:
    """Export the documents of causal-LM SHARDS for another trainer (resumable: rerun to
    continue)."""
    limit: int | None = None
    if mds_shard_bytes is not None:
        try:
            limit = int(mds_shard_bytes)
        except ValueError:
            fail(f"--mds-shard-bytes {mds_shard_bytes!r}: not an integer")
    try:
        summary = export(shards, out, fmt, splits=splits or None, mds_shard_bytes=limit)
    except (ExportError, _core.DataprepError, ValueError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(f"interrupted; finished splits are kept: rerun the same command to resume into {out}")
    secs = summary["seconds"]
    table = Table(title=f"export {fmt} -> {out}", title_justify="left")
    for col in ("split", "documents", "tokens", "files", "bytes"):
        table.add_column(col, justify="left" if col == "split" else "right")
    total = 0
    for name, sp in summary["splits"].items():
        size = sum(f["bytes"] for f in sp["files"])
        total += size
        table.add_row(
            name,
            f"{sp['documents']:,}",
            f"{sp['tokens']:,}",
            f"{len(sp['files']):,}",
            human_bytes(size),
        )
    Console().print(table)
    if summary["unchanged"]:
        note = "already complete (files checked against export.json); nothing written"
    else:
        kept = (
            f"; kept from the last run: {', '.join(summary['resumed'])}"
            if summary["resumed"]
            else ""
        )
        note = f"{secs:.2f} s, {total / max(secs, 1e-9) / 1e6:.1f} MB/s written{kept}"
    if summary["left_out"]:
        note += f"; not exported: {', '.join(summary['left_out'])} (no rows, or not asked for)"
    if "uploaded" in summary:
        up = summary["uploaded"]
        note += (
            f"; uploaded {up['objects']:,} objects ({human_bytes(up['bytes'])}), export.json last"
            if up["objects"]
            else f"; {out} already holds this export: nothing uploaded"
        )
    Console().print(f"dtype {summary['dtype']}; {note}", highlight=False, soft_wrap=True)


@main.command("export-tokenizer")
@click.argument("tokenizer", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Output directory (new or empty)."
)
@click.option("--pattern", help="Split pattern of a .tiktoken file without its .json sidecar.")
@click.option(
    "--model-max-length", type=str, help="model_max_length of the config [default: not set]."
)
@click.option("--bos-token", help="BOS special token [default: found by name].")
@click.option("--eos-token", help="EOS special token [default: found by name].")
@click.option("--unk-token", help="UNK special token [default: found by name].")
@click.option("--pad-token", help="PAD special token [default: found by name].")
@click.option("--mask-token", help="MASK special token [default: found by name].")
@click.option("--cls-token", help="CLS special token [default: found by name].")
@click.option("--sep-token", help="SEP special token [default: found by name].")
def export_tokenizer_cmd(
    tokenizer: Path,
    out: Path,
    pattern: str | None,
    model_max_length: str | None,
    **tokens: str | None,
) -> None:
    """Write a transformers tokenizer directory (AutoTokenizer.from_pretrained) for TOKENIZER."""
    length: int | None = None
    if model_max_length is not None:
        try:
            length = int(model_max_length)
        except ValueError:
            fail(f"--model-max-length {model_max_length!r}: not an integer")
    roles = {role: tokens[f"{role}_token"] for role in ROLES}
    try:
        result = write_transformers_dir(
            tokenizer, out, pattern=pattern, model_max_length=length, **roles
        )
    except (_core.DataprepError, ValueError, OSError) as e:
        fail(str(e))
    table = Table(title=f"export-tokenizer -> {out}", show_header=False, title_justify="left")
    for role in ROLES:
        token = result["roles"].get(role)
        how = "" if token is None else (" (given)" if roles[role] else " (found by name)")
        table.add_row(role, Text("not set" if token is None else f"{token}{how}"))
    table.add_row("model_max_length", "not set" if length is None else f"{length:,}")
    table.add_row("wrote", Text(", ".join(str(p) for p in result["files"]), overflow="fold"))
    Console().print(table)


def skipped_text(stats: dict[str, Any]) -> str:
    """Documents (and binary files) left out, by reason, from a reading-stats dict."""
    return (
        f"{stats['empty_skipped']:,} empty, {stats['invalid_utf8_skipped']:,} invalid UTF-8, "
        f"{stats['binary_skipped']:,} binary files"
    )


def read_notes(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """Summary rows for what was read but not as it came: replaced text (always shown, so that
    0 is a fact and not an omission), truncated WikiExtractor documents and binary files (named)."""
    rows = [
        ("replaced", f"{stats['invalid_utf8_replaced']:,} documents with invalid UTF-8 -> U+FFFD")
    ]
    if stats["truncated_documents"]:
        rows.append(
            ("truncated", f"{stats['truncated_documents']:,} documents without </doc> (kept)")
        )
    if stats["binary_skipped"]:
        paths = stats["binary_skipped_paths"]
        more = stats["binary_skipped"] - len(paths)
        rows.append(("binary files", ", ".join(paths) + (f" and {more:,} more" if more else "")))
    return rows


if __name__ == "__main__":
    main()
