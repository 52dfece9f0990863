"""The GPU path in one short run (< 8 minutes on one H200): what CPU tests cannot show.

    python bench/gpu_checks.py [--out gpu_checks.json]     # on a machine with a CUDA GPU
    python bench/gpu_checks.py --dry-run                    # the same logic on CPU, tiny sizes

Checks, each a JSON entry (`ok`, figures, or `error`), printed as one summary at the end:
- `ddp_nccl`: one rank of DistributedDataParallel over NCCL (a process group of one, through
  torchrun), two steps; the gradients equal the plain model's.
- `trainer_*`: `torchrun --nproc-per-node 1 -m train` on shards of the bundled demo corpus:
  GPT with `--compile` (bf16 autocast, fused AdamW, TF32, pinned memory), GPT `--doc-mask`
  (flex_attention block mask, compiled), BERT+NSP unpadded and compiled, and `--parallel fsdp`
  on one rank stopped and resumed from its sharded checkpoint (the resumed losses must equal
  the uninterrupted run's). Loss must fall and stay finite.
- `mfu_*`: `bench_train.model_step`, the trainer's step on synthetic rows at the real
  vocabularies: GPT-2 124M at seq 1024, BERT-base at seq 128 and 512 with 15% and 30% masking;
  each records `target_mfu` (issue 15: 45% GPT-2, 35% BERT-base on real tokens) and
  `meets_target`.

Without CUDA (and without `--dry-run`) it prints one line saying so and exits 0. `--dry-run`
runs every check on CPU with tiny models, gloo instead of NCCL and the `aot_eager` compile
backend for the model steps (inductor would need minutes of C++ compilation), so the script's
own logic is tested where there is no GPU. A check that fails is recorded and the others still
run; the exit code is 1 if any failed. `--budget-s` stops starting new checks when the time is
spent (they are then listed as skipped). The shards and runs live in a temporary directory,
removed at the end (`--keep-work` keeps it); the summary holds every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import REPO

sys.path.insert(0, str(REPO / "python"))
DEMO = REPO / "tests" / "data" / "demo"
SPECIALS = ["<|endoftext|>", "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO / "python"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}


def _torchrun(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    proc = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return proc


def shards(work: Path) -> dict[str, Path]:
    """A tokenizer and clm / nsp shards of the demo corpus (seconds)."""
    import dataprep

    tok = work / "tokenizer.json"
    dataprep.train_bpe(DEMO, 2000, out=tok, special_tokens=SPECIALS, tiktoken=False)
    out = {"clm": work / "clm", "nsp": work / "nsp"}
    dataprep.tokenize(DEMO, tok, out["clm"], seq_len=512, val_fraction=0.02)
    dataprep.tokenize(
        DEMO, tok, out["nsp"], seq_len=128, val_fraction=0.02, objective="mlm", layout="nsp"
    )
    return out


# --- checks -----------------------------------------------------------------------------


def ddp_child(device: str) -> None:
    """Runs under torchrun (one rank): DDP over NCCL (gloo on CPU) against the plain model."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from train import model

    cuda = device == "cuda"
    dev = torch.device("cuda", 0) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", device_id=dev if cuda else None)
    torch.manual_seed(0)
    cfg = model.model_config("mini", "gpt", vocab_size=1000, max_seq_len=128)
    plain = model.build_model(cfg).to(dev)
    wrapped = DDP(model.build_model(cfg).to(dev), device_ids=[0] if cuda else None)
    wrapped.module.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 1000, (4, 128), device=dev)
    for net in (plain, wrapped):
        net(input_ids=ids, labels=ids)["lm"].backward()
    worst = max(
        float((a.grad - b.grad).abs().max())  # type: ignore[operator]
        for a, b in zip(plain.parameters(), wrapped.module.parameters(), strict=True)
    )
    backend = str(dist.get_backend())
    dist.destroy_process_group()
    print("RESULT" + json.dumps({"backend": backend, "max_grad_diff": worst}))
    if worst > 1e-5:
        raise SystemExit(f"DDP gradients differ from the plain model's by {worst}")


def check_ddp(ctx: dict[str, Any]) -> dict[str, Any]:
    proc = _torchrun([__file__, "--child-ddp", ctx["device"]], timeout=180)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])  # type: ignore[no-any-return]


def trainer_run(ctx: dict[str, Any], name: str, args: list[str]) -> dict[str, Any]:
    """One `torchrun -m train` run; its losses, tokens/s and MFU from metrics.jsonl."""
    out = ctx["work"] / "runs" / name
    base = ["-m", "train", "--out", str(out), "--device", ctx["device"], "--log-every", "5",
            "--eval-every", "0", "--ckpt-every", "0", "--warmup-steps", "5", "--lr", "1e-3"]  # fmt: skip
    t0 = time.perf_counter()
    proc = _torchrun([*base, *args], timeout=ctx["run_timeout"])
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in records if "loss" in r]
    losses = [r["loss"] for r in rows]
    if not all(map(lambda x: x == x and abs(x) != float("inf"), losses)):
        raise RuntimeError(f"non-finite loss: {losses}")
    steady = rows[1:] or rows
    return {
        "wall_s": time.perf_counter() - t0,
        "losses": losses,
        "tokens_per_s": steady[-1]["tokens_per_s"],
        "mfu": steady[-1].get("mfu"),
        "banner": next((x for x in proc.stderr.splitlines() if " params, " in x), "").strip(),
    }


def check_trainer(args: list[str], falls: bool = True) -> Callable[[dict[str, Any]], Any]:
    def run(ctx: dict[str, Any]) -> dict[str, Any]:
        kind = "nsp" if "--objective" in args and "mlm" in args else "clm"
        res = trainer_run(ctx, "-".join(a.strip("-") for a in args[:6]), [
            "--shards", str(ctx["shards"][kind]), "--model", ctx["gpt"], *args])  # fmt: skip
        if falls and not res["losses"][-1] < res["losses"][0]:
            raise RuntimeError(f"loss did not fall: {res['losses']}")
        return res

    return run


def check_fsdp_resume(ctx: dict[str, Any]) -> dict[str, Any]:
    """FSDP on one rank: a run, and the same run stopped at step 10 and resumed from its sharded
    checkpoint; the losses must be equal."""
    args = ["--shards", str(ctx["shards"]["clm"]), "--model", ctx["gpt"], "--parallel",
            "fsdp", "--max-steps", "20", "--micro-batch", ctx["micro"], "--log-every", "5"]  # fmt: skip
    full = trainer_run(ctx, "fsdp-full", args)
    trainer_run(ctx, "fsdp-cut", [*args, "--halt-at-step", "10"])
    cut = trainer_run(ctx, "fsdp-cut", args)
    if cut["losses"] != full["losses"]:
        raise RuntimeError(f"resumed losses {cut['losses']} != uninterrupted {full['losses']}")
    return {**full, "resume_exact": True}


def check_mfu(target: float, **kw: Any) -> Callable[[dict[str, Any]], Any]:
    """The step's MFU against issue 15's target on an H100/H200 (recorded, not a failure: the
    figure is what BENCHMARKS.md needs)."""

    def run(ctx: dict[str, Any]) -> dict[str, Any]:
        from common import run_isolated

        if ctx["dry_run"]:
            kw.update(preset="tiny", vocab=1000, seq_len=min(kw["seq_len"], 64), micro_batch=2,
                      steps=2, warmup=1, device="cpu", compile_backend="aot_eager",
                      peak_tflops=1.0)  # fmt: skip
        res = run_isolated("bench_train:model_step", **kw)
        mfu = res.get("mfu")
        return {**res, "target_mfu": target, "meets_target": None if mfu is None else mfu >= target}

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny models (tests the script)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    ap.add_argument("--budget-s", type=float, default=450.0, help="start no check after this")
    ap.add_argument("--only", default=None, help="comma-separated check names (default: all)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary shards and runs")
    ap.add_argument("--child-ddp", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_ddp:
        ddp_child(a.child_ddp)
        return 0

    import torch

    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_checks: skipped, no CUDA device here (torch.cuda.is_available() is False); "
              "use --dry-run to exercise the script on CPU")  # fmt: skip
        return 0
    t_start = time.perf_counter()
    dry = a.dry_run
    ctx: dict[str, Any] = {
        "dry_run": dry,
        "device": "cpu" if dry else "cuda",
        "gpt": "tiny" if dry else "small",
        "micro": "2" if dry else "8",
        "run_timeout": 300 if dry else 240,
    }
    steps = "10" if dry else "40"
    gpt = ["--max-steps", steps, "--micro-batch", ctx["micro"]]
    compile_flag = [] if dry else ["--compile"]  # inductor on CPU: minutes of C++ builds
    bert = ["--objective", "mlm", "--max-steps", steps, "--micro-batch", "4" if dry else "64",
            "--activation-checkpointing", "selective", *compile_flag]  # fmt: skip
    checks: dict[str, Callable[[dict[str, Any]], Any]] = {
        "ddp_nccl": check_ddp,
        "trainer_gpt": check_trainer([*gpt, *compile_flag]),
        "trainer_gpt_doc_mask": check_trainer([*gpt, "--doc-mask", *compile_flag]),
        # Masked-token losses are noisy over a few steps: finite is the check.
        "trainer_bert_unpad": check_trainer(bert, falls=False),
        "trainer_fsdp_resume": check_fsdp_resume,
        "mfu_gpt2_124m_seq1024": check_mfu(
            0.45, arch="gpt", preset="small", vocab=50257, seq_len=1024, micro_batch=16
        ),
    }
    for seq, micro in ((128, 128), (512, 32)):
        for p in (0.15, 0.30):
            checks[f"mfu_bert_base_seq{seq}_mask{int(p * 100)}"] = check_mfu(
                0.35, arch="bert", preset="base", vocab=30522, seq_len=seq, micro_batch=micro,
                mask_probability=p,
            )  # fmt: skip
    wanted = set(a.only.split(",")) if a.only else set(checks)
    unknown = wanted - set(checks)
    if unknown:
        print(f"gpu_checks: unknown --only names {sorted(unknown)}; known: {sorted(checks)}")
        return 2
    # The shards and runs: removed at the end (the JSON summary holds every figure) unless
    # --keep-work.
    work = Path(tempfile.mkdtemp(prefix="gpu_checks-"))
    ctx["work"] = work
    try:
        ctx["shards"] = shards(work)
        return _run(ctx, checks, wanted, a.budget_s, a.out, t_start, torch)
    finally:
        if a.keep_work:
            print(f"gpu_checks: shards and runs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _run(
    ctx: dict[str, Any],
    checks: dict[str, Callable[[dict[str, Any]], Any]],
    wanted: set[str],
    budget_s: float,
    out: Path | None,
    t_start: float,
    torch: Any,
) -> int:
    """Runs the wanted checks in order; prints and writes (`out`) the summary; 1 if one failed."""
    dry = ctx["dry_run"]
    summary: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if not dry else "cpu (dry run)",
        "torch": torch.__version__,
        "checks": {},
    }
    failed = False
    for name, check in checks.items():
        if name not in wanted:
            continue
        if time.perf_counter() - t_start > budget_s:
            summary["checks"][name] = {"skipped": f"--budget-s {budget_s:.0f} spent"}
            continue
        t0 = time.perf_counter()
        try:
            result = {"ok": True, **check(ctx)}
        except Exception as e:
            failed = True
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"[-2000:]}
            traceback.print_exc()
        result["seconds"] = round(time.perf_counter() - t0, 1)
        summary["checks"][name] = result
        print(f"{name}: {json.dumps(result)[:300]}", flush=True)
    summary["total_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(summary, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
