"""The `dataprep` command line: options -> library call -> rich output. No logic lives here."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

import dataprep
from dataprep import _core
from dataprep.bpe import tiktoken_paths, train_bpe
from dataprep.dedup import banding, dedup
from dataprep.jobs import run_job
from dataprep.shards import Manifest, ShardSet
from dataprep.tokenize import tokenize

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


CORPUS_KEYS = ("fmt", "text_unit", "jsonl_field", "parquet_column", "invalid_utf8")


def corpus_options(f):  # type: ignore[no-untyped-def]
    """Adds the reading options and hands them to the command as one `corpus` dict of the
    library's keyword names, so each command passes them on with `**corpus`."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        corpus = {k: kwargs.pop(k) for k in CORPUS_KEYS}
        corpus["format"] = corpus.pop("fmt")
        return f(*args, corpus=corpus, **kwargs)

    for opt in reversed(CORPUS_OPTIONS):
        wrapper = opt(wrapper)
    return wrapper


def run_or_fail(job, interrupted: str):  # type: ignore[no-untyped-def]
    """Runs a library call with progress; a bad input or Ctrl-C becomes a one-line error."""
    try:
        return run_job(console, job)
    except (_core.DataprepError, ValueError, OSError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail(interrupted)


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
    corpus: dict[str, str],
) -> None:
    """Train a byte-level BPE tokenizer on INPUTS (files or directories)."""
    _, stats = run_or_fail(
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
            **corpus,
            progress=progress,
        ),
        "interrupted; nothing was written",
    )

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


@main.command("tokenize")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--tokenizer",
    "tokenizer_path",
    required=True,
    type=click.Path(path_type=Path),
    help="tokenizer.json (byte-level BPE) or a .tiktoken file.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Shard directory.")
@click.option("--seq-len", type=int, default=2048, show_default=True, help="Tokens per row.")
@click.option("--val-fraction", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the val split.")
@click.option("--shard-size", default="256MB", show_default=True, help="Target shard size.")
@click.option(
    "--last-row",
    type=click.Choice(["pad", "drop"]),
    default="pad",
    show_default=True,
    help="Final partial row: pad it (n_tokens tells its length) or drop it (counted).",
)
@click.option("--threads", type=int, default=None, help="Encoder threads [default: all cores].")
@click.option("--eos-token", default=None, help="EOS special token [default: found by name].")
@click.option("--bos-token", default=None, help="BOS special token [default: found by name].")
@click.option("--bos/--no-bos", "use_bos", default=True, show_default=True)
@click.option("--pad-token", default=None, help="Pad token [default: found by name, else EOS].")
@click.option(
    "--dedup",
    type=click.Choice(["none", "exact", "near"]),
    default="none",
    show_default=True,
    help="Drop duplicate documents before encoding (see `dataprep dedup`).",
)
@click.option("--dedup-threshold", type=float, default=0.8, show_default=True)
@click.option("--pattern", default=None, help="Split pattern for a .tiktoken without sidecar.")
@click.option(
    "--objective",
    type=click.Choice(["clm", "mlm"]),
    default="clm",
    show_default=True,
    help="clm: packed causal rows; mlm: [CLS] A [SEP] (B [SEP]) rows.",
)
@click.option(
    "--layout",
    type=click.Choice(["full-sentence", "nsp"]),
    default="full-sentence",
    show_default=True,
    help="MLM: sentences packed across documents (RoBERTa) or pairs with NSP labels (BERT).",
)
@click.option("--cls-token", default=None, help="MLM: [default: [CLS] or <s>].")
@click.option("--sep-token", default=None, help="MLM: [default: [SEP] or </s>].")
@click.option("--mask-token", default=None, help="MLM: [default: [MASK] or <mask>].")
@click.option(
    "--nsp-block-docs",
    type=int,
    default=256,
    show_default=True,
    help="NSP: documents per block; random B segments come from the same block.",
)
@click.option(
    "--static-masking", is_flag=True, help="MLM: mask at prep time (adds a labels column)."
)
@click.option(
    "--dupe-factor",
    type=int,
    default=1,
    show_default=True,
    help="Static masking: differently masked copies of each row.",
)
@click.option("--mask-probability", type=float, default=0.15, show_default=True)
@click.option(
    "--mask-strategy",
    type=click.Choice(["bernoulli", "fixed", "whole_word", "span"]),
    default="bernoulli",
    show_default=True,
)
@click.option(
    "--replace-mask",
    type=float,
    default=0.8,
    show_default=True,
    help="Share of masked tokens replaced by [MASK].",
)
@click.option(
    "--replace-random",
    type=float,
    default=0.1,
    show_default=True,
    help="Share of masked tokens replaced by a random id (the rest stay).",
)
@click.option("--span-p", type=float, default=0.2, show_default=True, help="Span: geometric p.")
@click.option("--max-span", type=int, default=10, show_default=True, help="Span: longest, words.")
@click.option(
    "--max-predictions", type=int, default=None, help="fixed: most masked tokens per row."
)
@corpus_options
def tokenize_cmd(
    inputs: tuple[Path, ...],
    tokenizer_path: Path,
    out: Path,
    seq_len: int,
    val_fraction: float,
    seed: int,
    shard_size: str,
    last_row: str,
    threads: int | None,
    eos_token: str | None,
    bos_token: str | None,
    use_bos: bool,
    pad_token: str | None,
    dedup: str,
    dedup_threshold: float,
    pattern: str | None,
    objective: str,
    layout: str,
    cls_token: str | None,
    sep_token: str | None,
    mask_token: str | None,
    nsp_block_docs: int,
    static_masking: bool,
    dupe_factor: int,
    mask_probability: float,
    mask_strategy: str,
    replace_mask: float,
    replace_random: float,
    span_p: float,
    max_span: int,
    max_predictions: int | None,
    corpus: dict[str, str],
) -> None:
    """Tokenize INPUTS into packed Arrow shards in --out (resumable: rerun to continue)."""
    import time

    t0 = time.perf_counter()
    m = run_or_fail(
        lambda progress: tokenize(
            inputs,
            tokenizer_path,
            out,
            seq_len=seq_len,
            val_fraction=val_fraction,
            seed=seed,
            shard_size=shard_size,
            last_row=last_row,
            threads=threads,
            eos_token=eos_token,
            bos_token=bos_token,
            use_bos=use_bos,
            pad_token=pad_token,
            dedup=dedup,
            dedup_threshold=dedup_threshold,
            pattern=pattern,
            **corpus,
            progress=progress,
            objective=objective,
            layout=layout,
            cls_token=cls_token,
            sep_token=sep_token,
            mask_token=mask_token,
            nsp_block_docs=nsp_block_docs,
            static_masking=static_masking,
            dupe_factor=dupe_factor,
            mask_probability=mask_probability,
            mask_strategy=mask_strategy,
            replace_mask=replace_mask,
            replace_random=replace_random,
            span_p=span_p,
            max_span=max_span,
            max_predictions=max_predictions,
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
    Console().print(
        f"{docs['read']:,} documents ({human_bytes(docs['bytes'])}) read, skipped: {skipped}; "
        f"seq_len {m['seq_len']}, {m['dtype']}; {secs:.2f} s, "
        f"{docs['bytes'] / max(secs, 1e-9) / 1e6:.1f} MB/s, {tokens / max(secs, 1e-9) / 1e6:.2f}M tokens/s",
        highlight=False,
    )


@main.command("dedup")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("deduped"),
    show_default=True,
    help="Directory for the kept documents, clusters.jsonl (the audit report) and summary.json.",
)
@click.option(
    "--mode",
    type=click.Choice(["exact", "near"]),
    default="near",
    show_default=True,
    help="exact: normalized-text hash; near: exact, then MinHash LSH.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.8,
    show_default=True,
    help="Jaccard similarity of shingles at and above which documents are near duplicates.",
)
@click.option(
    "--ngram", type=click.IntRange(1), default=5, show_default=True, help="Words per shingle."
)
@click.option("--num-perm", type=click.IntRange(1, 1024), default=128, show_default=True)
@click.option(
    "--bands",
    type=(click.IntRange(1), click.IntRange(1)),
    default=None,
    metavar="B R",
    help="LSH bands and rows [default: derived from --threshold].",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check candidate pairs by their true Jaccard: no pair below the threshold is removed.",
)
@click.option("--nfc/--no-nfc", default=True, show_default=True, help="Exact key: Unicode NFC.")
@click.option(
    "--whitespace/--no-whitespace",
    default=True,
    show_default=True,
    help="Exact key: collapse whitespace.",
)
@click.option(
    "--lowercase/--no-lowercase",
    default=False,
    show_default=True,
    help="Exact key: ignore case.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="MinHash seed.")
@click.option("--threads", type=int, default=None, help="Worker threads [default: all cores].")
@click.option(
    "--memory-mb",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="Sort-buffer budget; beyond it signatures spill to sorted runs on disk.",
)
@click.option(
    "--temp-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where sorted runs are spilled [default: system temp].",
)
@corpus_options
def dedup_cmd(
    inputs: tuple[Path, ...],
    out: Path,
    mode: str,
    threshold: float,
    ngram: int,
    num_perm: int,
    bands: tuple[int, int] | None,
    verify: bool,
    nfc: bool,
    whitespace: bool,
    lowercase: bool,
    seed: int,
    threads: int | None,
    memory_mb: int,
    temp_dir: Path | None,
    corpus: dict[str, str],
) -> None:
    """Remove exact and near-duplicate documents from INPUTS (files or directories)."""
    if mode == "near":
        if bands is not None and bands[0] * bands[1] > num_perm:
            fail(f"--bands {bands[0]} x {bands[1]} needs more than --num-perm {num_perm}")
        b, r, p = banding(threshold, num_perm, verify)
        if bands is not None:
            b, r = bands
            p = 1 - (1 - threshold**r) ** b
        console.print(
            f"LSH: {b} bands x {r} rows of {num_perm} permutations; a pair at J = {threshold:.2f} "
            f"becomes a candidate with probability {p:.3f}"
            + ("; candidates are verified by exact Jaccard" if verify else ""),
            highlight=False,
        )
    stats = run_or_fail(
        lambda progress: dedup(
            inputs,
            out,
            mode=mode,
            threshold=threshold,
            ngram=ngram,
            num_perm=num_perm,
            bands=bands,
            verify=verify,
            nfc=nfc,
            whitespace=whitespace,
            lowercase=lowercase,
            seed=seed,
            threads=threads,
            memory_mb=memory_mb,
            temp_dir=temp_dir,
            **corpus,
            progress=progress,
        ),
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
        ("exact removed", pct(stats["exact_removed"])),
    ]
    if mode == "near":
        rows += [
            ("near removed", pct(stats["near_removed"])),
            (
                "LSH",
                f"{stats['bands']} bands x {stats['rows']} rows, threshold {threshold:.2f}, "
                f"{ngram}-gram shingles",
            ),
            (
                "pairs",
                f"{stats['candidate_pairs']:,} candidates, {stats['similar_pairs']:,} "
                + ("verified >= threshold" if verify else "accepted (not verified)"),
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
        ("wrote", f"{out}/ ({len(stats['outputs'])} files, clusters.jsonl, summary.json)"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


@main.command("inspect")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--rows", type=int, default=2, show_default=True, help="Rows to decode and show.")
@click.option("--no-verify", is_flag=True, help="Skip checksum validation.")
def inspect_cmd(directory: Path, rows: int, no_verify: bool) -> None:
    """Summarize a shard directory, validate its checksums and decode a few rows."""
    try:
        m = Manifest.read(directory)
        problems = [] if no_verify else m.verify()
        # Rows of a directory that failed verification would mean little.
        samples = [] if problems or not m.split_rows("train") else ShardSet(m.path).samples(rows)
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
