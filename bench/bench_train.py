"""The trainer's data path, side by side in one run: `train.data.make_loader` alone vs the usual
HF route over the same Arrow shard files (`datasets.Dataset.from_file` + `concatenate_datasets`,
`.shuffle(seed)`, `.with_format("torch")`, a torch DataLoader; for MLM with
`transformers.DataCollatorForLanguageModeling`), then what the trainer consumes: 2-rank gloo
`torchrun -m train` runs of tiny GPT (clm shards) and tiny BERT (nsp shards) on CPU, and the
loader's headroom over them. Every loader variant runs in a fresh process (peak RSS is its own).

    python bench/bench_train.py [--work /tmp/bench_train] [--tokenizer tok.json] [--runs 1]

Shards (32k byte-level BPE with `<|endoftext|> [PAD] [UNK] [CLS] [SEP] [MASK]`; clm seq 1024,
mlm full-sentence seq 512, mlm nsp seq 128; 1% val) are cached under `--work` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import CORPORA, REPO, run_isolated

SPECIALS = ["<|endoftext|>", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SHARDS = {
    "clm": {"seq_len": 1024},
    "mlm": {"seq_len": 512, "objective": "mlm", "layout": "full-sentence"},
    "nsp": {"seq_len": 128, "objective": "mlm", "layout": "nsp"},
}
# Literature estimate, not a measurement: GPT-2-small (124M) training throughput on one H100
# in bf16 with torch.compile / flash attention (nanoGPT and llm.c reports), per GPU.
H100_GPT2_SMALL_TOKENS_PER_S = (0.3e6, 0.6e6)


# --- shards -------------------------------------------------------------------------------


def prepare(work: Path, folder: Path, tokenizer: str | None) -> tuple[Path, dict[str, Path]]:
    """The tokenizer and the three shard directories, built once and reused."""
    import dataprep

    work.mkdir(parents=True, exist_ok=True)
    tok = Path(tokenizer) if tokenizer else work / "tok.json"
    if not tok.is_file():
        t0 = time.perf_counter()
        dataprep.train_bpe(folder, 32000, out=tok, special_tokens=SPECIALS, tiktoken=False)
        print(f"train_bpe: {time.perf_counter() - t0:.1f} s", flush=True)
    dirs = {}
    for name, kw in SHARDS.items():
        out = work / name
        if not (out / "manifest.json").is_file():
            t0 = time.perf_counter()
            dataprep.tokenize(folder, tok, out, val_fraction=0.01, threads=2, **kw)
            print(f"tokenize {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        dirs[name] = out
    return tok, dirs


# --- loaders (each in a fresh process) ----------------------------------------------------


def _drain(it, steps: int) -> tuple[float, float, int]:
    """(start-up seconds to the first batch, seconds for the next `steps` batches, rows)."""
    t0 = time.perf_counter()
    first = next(it)
    t1 = time.perf_counter()
    rows = 0
    for _ in range(steps):
        b = next(it)
        rows += int(b["input_ids"].shape[0])
    del first
    return t1 - t0, time.perf_counter() - t1, rows


def ours(
    shards: str,
    micro_batch: int,
    workers: int,
    steps: int,
    strategy: str | None = None,
    world_size: int = 1,
) -> dict:
    sys.path.insert(0, str(REPO / "python"))
    from train import data

    ss = data.ShardSet(shards, "train")
    masking = data.MaskingConfig(strategy=strategy) if strategy else None  # type: ignore[arg-type]
    loader = data.make_loader(
        ss,
        rank=0,
        world_size=world_size,
        micro_batch=micro_batch,
        grad_accum=1,
        seed=0,
        epoch=0,
        num_workers=workers,
        masking=masking,
    )
    startup, seconds, rows = _drain(iter(loader), steps)
    return {"startup": startup, "seconds": seconds, "rows": rows, "seq_len": ss.seq_len}


def hf(shards: str, tok: str, micro_batch: int, workers: int, steps: int, mlm: bool) -> dict:
    import torch
    from datasets import Dataset, concatenate_datasets, disable_progress_bars
    from torch.utils.data import DataLoader
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    import dataprep

    disable_progress_bars()
    manifest = dataprep.Manifest.read(shards)
    files = manifest.shard_paths("train")
    t0 = time.perf_counter()
    ds = concatenate_datasets([Dataset.from_file(str(f)) for f in files])
    # keep_in_memory: the indices mapping would otherwise be written next to the shards.
    ds = ds.shuffle(seed=0, keep_in_memory=True)
    if mlm:
        ds = ds.select_columns(["input_ids", "token_type_ids", "special_tokens_mask"])
        fast = PreTrainedTokenizerFast(
            tokenizer_file=tok,
            mask_token="[MASK]",
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
        )
        collate = DataCollatorForLanguageModeling(fast, mlm=True, mlm_probability=0.15)
    else:
        ds = ds.select_columns(["input_ids"])
        collate = None
    ds = ds.with_format("torch")
    torch.manual_seed(0)
    loader = DataLoader(
        ds, batch_size=micro_batch, num_workers=workers, collate_fn=collate, drop_last=True
    )
    setup = time.perf_counter() - t0
    startup, seconds, rows = _drain(iter(loader), steps)
    return {
        "startup": setup + startup,
        "seconds": seconds,
        "rows": rows,
        "seq_len": manifest.seq_len,
    }


# --- model step (the trainer's step on synthetic rows: MFU at real vocabulary sizes) ---------


def model_step(
    arch: str,
    preset: str,
    vocab: int,
    seq_len: int,
    micro_batch: int,
    steps: int = 10,
    warmup: int = 3,
    mask_probability: float = 0.15,
    unpad: bool = True,
    compile: bool = True,
    compile_backend: str = "inductor",
    device: str = "cuda",
    peak_tflops: float | None = None,
) -> dict:
    """Times the trainer's optimizer step (train.model, train.optim's fused AdamW, bf16 autocast
    on CUDA, per-block compile, BERT unpadded with the MLM head on the masked positions only)
    on random full rows; returns tokens/s, MFU as the trainer counts it (train.train), peak
    memory. The first `warmup` steps (compilation) are not timed.

    The demo shards have a 600-id vocabulary; GPT-2 (50,257) and BERT (30,522) spend a large
    share of their FLOPs in the output layer, so the MFU of those models needs their vocabulary:
    hence synthetic rows here, and the real data path in gpu_checks.py's trainer runs.
    """
    sys.path.insert(0, str(REPO / "python"))
    import torch

    from train import config, model, optim
    from train import train as trainer

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(0)
    cfg = model.model_config(preset, arch, vocab_size=vocab, max_seq_len=seq_len)
    m = model.build_model(cfg).to(dev)
    if isinstance(m, model.BERT):
        m.unpad = unpad
    if compile:
        m.compile_blocks(backend=compile_backend)
    opt = optim.build_optimizer(m, config.TrainConfig(), dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    g = torch.Generator(device="cpu").manual_seed(0)

    def batch() -> dict:
        ids = torch.randint(0, vocab, (micro_batch, seq_len), generator=g)
        if arch == "gpt":
            return {"input_ids": ids, "labels": ids}
        picked = torch.rand(micro_batch, seq_len, generator=g) < mask_probability
        return {
            "input_ids": ids,
            "labels": torch.where(picked, ids, -100),
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }

    rows = [batch() for _ in range(4)]
    targets = sum(int((b["labels"] != -100).sum()) for b in rows) / len(rows)

    def step(i: int) -> None:
        b = {k: v.to(dev, non_blocking=True) for k, v in rows[i % len(rows)].items()}
        with autocast:
            out = m(**b)
        (out["lm"] / max(targets, 1.0)).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync()
    warm = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    seconds = time.perf_counter() - t0
    tokens_per_s = steps * micro_batch * seq_len / seconds
    share = targets / (micro_batch * seq_len)
    if isinstance(m, model.BERT):
        flops = m.flops_per_token(seq_len, mlm_fraction=share)
    else:
        flops = m.flops_per_token(seq_len)
    peak = peak_tflops
    if peak is None and dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = next((tf for key, tf in trainer.PEAK_TFLOPS.items() if key in name), None)
    return {
        "arch": arch,
        "preset": preset,
        "params_m": m.num_params() / 1e6,
        "vocab": cfg.vocab_size,
        "seq_len": seq_len,
        "micro_batch": micro_batch,
        "mask_probability": mask_probability if arch == "bert" else None,
        "unpad": unpad if arch == "bert" else None,
        "compile": compile,
        "warmup_s": warm,
        "step_s": seconds / steps,
        "tokens_per_s": tokens_per_s,
        "tflops": flops * tokens_per_s / 1e12,
        "mfu": flops * tokens_per_s / (peak * 1e12) if peak else None,
        "peak_tflops": peak,
        "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None,
    }


# --- trainer ------------------------------------------------------------------------------


def train_run(name: str, shards: Path, out: Path, args: list[str]) -> dict:
    """One `torchrun --standalone --nproc-per-node 2 -m train` run from scratch; its metrics."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "train",
        "--shards",
        str(shards),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--ckpt-every",
        "0",
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"{name}: torchrun exited {proc.returncode}")
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
    train = [r for r in recs if "loss" in r]
    evals = [r for r in recs if "eval_loss" in r]
    steady = train[1:] or train  # the first interval includes start-up
    return {
        "name": name,
        "wall": wall,
        "steps": train[-1]["step"],
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
        "data_wait": statistics.median(r["data_wait"] for r in steady),
        "step_time": statistics.median(r["step_time"] for r in steady),
        "first_loss": train[0]["loss"],
        "last_loss": train[-1]["loss"],
        "first_eval": evals[0]["eval_loss"] if evals else float("nan"),
        "last_eval": evals[-1]["eval_loss"] if evals else float("nan"),
        "last_ppl": evals[-1]["eval_ppl"] if evals else float("nan"),
        "nsp_loss": (train[0].get("nsp_loss"), train[-1].get("nsp_loss")),
        "banner": next((x for x in proc.stderr.splitlines() if " params, " in x), ""),
        "command": " ".join(["torchrun", *cmd[1:]]),
    }


# --- main ---------------------------------------------------------------------------------


def _rate(r: dict, micro_batch: int) -> tuple[float, float]:
    """(tokens/s, rows/s) of a loader result: slots of `seq_len` tokens, padding included (as
    the trainer counts them)."""
    rows_s = r["rows"] / r["seconds"]
    return rows_s * r["seq_len"], rows_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="enwiki")
    ap.add_argument("--work", default="/tmp/bench_train", help="Shard cache and run directories.")
    ap.add_argument("--tokenizer", default=None, help="Reuse a tokenizer with the specials.")
    ap.add_argument("--steps", type=int, default=1000, help="Loader micro-batches timed.")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--runs", type=int, default=1, help="Interleaved loader rounds (median).")
    ap.add_argument("--gpt-steps", type=int, default=60)
    ap.add_argument("--gpt-micro-batch", type=int, default=2)
    ap.add_argument("--bert-steps", type=int, default=300)
    ap.add_argument("--bert-micro-batch", type=int, default=8)
    ap.add_argument("--mini", action="store_true", help="Also a mini GPT run.")
    ap.add_argument("--skip-loader", action="store_true")
    ap.add_argument("--skip-trainer", action="store_true")
    a = ap.parse_args()

    work = Path(a.work)
    tok, dirs = prepare(work, CORPORA / a.corpus / "AA", a.tokenizer)
    mb, steps = a.micro_batch, a.steps
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emit(
        f"commit {commit}; {a.corpus}/AA; {os.cpu_count()} cpus (shared), load average "
        f"{load:.1f} at start"
    )

    # Loader variants: (group, system, function, kwargs).
    variants: list[tuple[str, str, str, dict]] = []
    for w in (0, 2):
        base = {"micro_batch": mb, "workers": w, "steps": steps}
        clm, mlm = str(dirs["clm"]), str(dirs["mlm"])
        variants += [
            (f"clm 1024, {w} workers", "dataprep", "bench_train:ours", {"shards": clm, **base}),
            (
                f"clm 1024, {w} workers",
                "HF datasets",
                "bench_train:hf",
                {"shards": clm, "tok": str(tok), "mlm": False, **base},
            ),
            (
                f"mlm 512, {w} workers",
                "dataprep bernoulli",
                "bench_train:ours",
                {"shards": mlm, "strategy": "bernoulli", **base},
            ),
            (
                f"mlm 512, {w} workers",
                "dataprep whole_word",
                "bench_train:ours",
                {"shards": mlm, "strategy": "whole_word", **base},
            ),
            (
                f"mlm 512, {w} workers",
                "HF datasets + collator",
                "bench_train:hf",
                {"shards": mlm, "tok": str(tok), "mlm": True, **base},
            ),
        ]
    loader_res: dict[tuple[str, str], list[dict]] = {}
    if not a.skip_loader:
        for r in range(a.runs):
            for group, system, fn, kw in variants:
                res = run_isolated(fn, **kw)
                loader_res.setdefault((group, system), []).append(res)
                tps, _ = _rate(res, mb)
                print(f"round {r} {group} {system}: {tps:,.0f} tok/s", flush=True)
        emit(
            f"\n### Loader alone: micro-batch {mb}, 1 rank, {steps} micro-batches timed after the "
            f"first, median of {a.runs}\n"
        )
        emit("| data | system | tokens/s | rows/s | start-up s | peak RSS MB | dataprep / HF |")
        emit("|---|---|---:|---:|---:|---:|---:|")
        for (group, system), rs in loader_res.items():
            tps = statistics.median(_rate(x, mb)[0] for x in rs)
            rps = statistics.median(_rate(x, mb)[1] for x in rs)
            anchor = next(v for (g, s), v in loader_res.items() if g == group and "HF" in s)
            ratio = (
                statistics.median(
                    _rate(x, mb)[0] / _rate(h, mb)[0] for x, h in zip(rs, anchor, strict=True)
                )
                if "HF" not in system
                else 1.0
            )
            emit(
                f"| {group} | {system} | {tps:,.0f} | {rps:,.0f} | "
                f"{statistics.median(x['startup'] for x in rs):.2f} | "
                f"{max(x['peak_rss_mb'] for x in rs):.0f} | "
                f"{'' if 'HF' in system else f'{ratio:.1f}x'} |"
            )

    if a.skip_trainer:
        return

    def run(name: str, shards: Path, model: str, steps: int, micro: int, strategy: str | None):
        """One trainer run: (name, shards, micro-batch, masking strategy, trainer arguments)."""
        args = ["--model", model, "--max-steps", str(steps), "--micro-batch", str(micro),
                "--warmup-steps", str(max(1, steps // 8)), "--eval-every", str(steps // 2),
                "--lr", "3e-3", "--log-every", "5", "--eval-rows", "64"]  # fmt: skip
        return name, shards, micro, strategy, args

    runs = [
        run("tiny GPT, clm 1024", dirs["clm"], "tiny", a.gpt_steps, a.gpt_micro_batch, None),
        run(
            "tiny BERT + NSP, nsp 128",
            dirs["nsp"],
            "tiny",
            a.bert_steps,
            a.bert_micro_batch,
            "bernoulli",
        ),
    ]
    if a.mini:
        runs.append(run("mini GPT, clm 1024", dirs["clm"], "mini", 40, 1, None))
    results = []
    for name, shards, tmb, strategy, args in runs:
        res = train_run(name, shards, work / "runs" / name.split(",")[0].replace(" ", "-"), args)
        # The loader alone in the trainer's configuration: rank 0 of 2, the trainer's micro-batch,
        # with 2 worker processes and in process (the trainer's default, on a thread).
        for workers in (2, 0):
            out = run_isolated(
                "bench_train:ours",
                shards=str(shards),
                micro_batch=tmb,
                workers=workers,
                steps=max(steps, 2000 // tmb),
                strategy=strategy,
                world_size=2,
            )
            res[f"loader{workers}_tps"] = _rate(out, tmb)[0]
        print(
            f"{name}: {res['tokens_per_s']:,.0f} tok/s, loss {res['first_loss']:.3f} -> "
            f"{res['last_loss']:.3f}, {res['wall']:.0f} s",
            flush=True,
        )
        results.append(res)

    emit("\n### Trainer: torchrun --standalone --nproc-per-node 2 -m train --device cpu (gloo)\n")
    emit(
        "| run | steps | wall s | tokens/s (2 ranks) | per rank | data_wait | train loss first -> last "
        "| eval loss first -> last (ppl) | loader tokens/s per rank, same config (2 workers / 0) "
        "| headroom (2 workers / 0) |"
    )
    emit("|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for r in results:
        per_rank = r["tokens_per_s"] / 2
        nsp = ""
        if r["nsp_loss"][0] is not None:
            nsp = f" (nsp {r['nsp_loss'][0]:.3f} -> {r['nsp_loss'][1]:.3f})"
        emit(
            f"| {r['name']} | {r['steps']} | {r['wall']:.0f} | {r['tokens_per_s']:,.0f} | "
            f"{per_rank:,.0f} | {r['data_wait']:.1%} | {r['first_loss']:.3f} -> "
            f"{r['last_loss']:.3f}{nsp} | {r['first_eval']:.3f} -> {r['last_eval']:.3f} "
            f"({r['last_ppl']:,.0f}) | {r['loader2_tps']:,.0f} / {r['loader0_tps']:,.0f} | "
            f"{r['loader2_tps'] / per_rank:,.0f}x / {r['loader0_tps'] / per_rank:,.0f}x |"
        )
    emit("")
    for r in results:
        emit(f"    {r['command']}")
    emit("")
    for r in results:
        emit(f"    {r['banner'].strip()}")
    if loader_res:
        lo, hi = H100_GPT2_SMALL_TOKENS_PER_S
        emit(
            f"\nGPU: GPT-2-small on one H100 consumes very roughly {lo / 1e6:.1f}-{hi / 1e6:.1f}M "
            "tokens/s (literature estimate, not measured here). Loader alone per rank on this "
            f"machine, micro-batch {mb}, and its headroom over {hi / 1e6:.1f}M:"
        )
        for (group, system), rs in loader_res.items():
            if "HF" not in system:
                tps = statistics.median(_rate(x, mb)[0] for x in rs)
                emit(f"- {group}, {system}: {tps / 1e6:.1f}M tokens/s = {tps / hi:.0f}x")


if __name__ == "__main__":
    main()
