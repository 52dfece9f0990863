"""FSDP vs DDP on 2 gloo ranks (CPU): step time and memory per rank, for the trainer's models.

    python bench/bench_parallel.py [--models tiny,small] [--steps 4] [--seq-len 128]

Each (model, parallel) pair runs in its own `torchrun --standalone --nproc-per-node 2` job:
the trainer's model (`train.model`, GPT at GPT-2's vocabulary 50,257), wrapped as the trainer
wraps it (`Trainer._shard` for fsdp: blocks then root; DDP otherwise), AdamW from
`train.optim`, on synthetic rows, `--steps` timed optimizer steps after one warm-up step.
Reported per rank: the median step time, the bytes of parameters + gradients + AdamW state
that the rank holds (the local shards under FSDP; measured from the tensors), and the process's
peak RSS and its growth over the RSS before the model was built (torch itself is ~300 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from common import REPO


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(preset: str, parallel: str, steps: int, seq_len: int, micro_batch: int) -> None:
    """One rank of one configuration (under torchrun); rank 0 prints the RESULT line."""
    sys.path.insert(0, str(REPO / "python"))
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor
    from torch.nn.parallel import DistributedDataParallel as DDP

    from train import config, model, optim

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    rss0 = _rss_mb()
    torch.manual_seed(0)
    cfg = model.model_config(preset, "gpt", vocab_size=50257, max_seq_len=seq_len)
    m = model.build_model(cfg)
    net: torch.nn.Module = m
    if parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
        blocks = m.blocks_list()
        for i, block in enumerate(blocks):
            fully_shard(block, mp_policy=policy, reshard_after_forward=i < len(blocks) - 1)
        fully_shard(m, mp_policy=policy)
    else:
        net = DDP(m)
    opt = optim.build_optimizer(m, config.TrainConfig(), torch.device("cpu"))
    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(0, 50257, (micro_batch, seq_len), generator=g)
    times = []
    for i in range(steps + 1):
        dist.barrier()
        t0 = time.perf_counter()
        loss = net(input_ids=ids, labels=ids)["lm"] / ids.numel()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=i == steps)  # keep the gradients of the last step: measured
        if i:
            times.append(time.perf_counter() - t0)

    def local_bytes(t: torch.Tensor) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    seen: set[int] = set()
    state = 0
    for p in m.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        state += local_bytes(p) + (local_bytes(p.grad) if p.grad is not None else 0)
        for v in opt.state.get(p, {}).values():
            if isinstance(v, torch.Tensor) and v.ndim:
                state += local_bytes(v)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"step_s": statistics.median(times), "state_mb": state / 2**20,
              "peak_rss_mb": peak, "rss_growth_mb": peak - rss0}  # fmt: skip
    everyone: list[object] = [None] * world
    dist.all_gather_object(everyone, result)
    if rank == 0:
        print("RESULT" + json.dumps({"params_m": m.num_params() / 1e6, "ranks": everyone}))
    dist.destroy_process_group()


def run(preset: str, parallel: str, steps: int, seq_len: int, micro_batch: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           __file__, "--child", preset, parallel, str(steps), str(seq_len), str(micro_batch)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{preset} {parallel}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,small", help="presets, comma-separated")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--child", nargs=5, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        p, par, steps, seq, mb = a.child
        child(p, par, int(steps), int(seq), int(mb))
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    print(f"commit {commit}; {os.cpu_count()} cpus (shared), load average "
          f"{os.getloadavg()[0]:.1f} at start; GPT, vocab 50,257, seq {a.seq_len}, "
          f"micro-batch {a.micro_batch} per rank, 2 gloo ranks, fp32\n")  # fmt: skip
    print(
        "| model | params | parallel | step s (median) | params+grads+AdamW per rank MB "
        "| peak RSS per rank MB | RSS growth per rank MB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for preset in a.models.split(","):
        for parallel in ("ddp", "fsdp"):
            r = run(preset, parallel, a.steps, a.seq_len, a.micro_batch)
            ranks = r["ranks"]

            def each(key: str, ranks: list[dict] = ranks) -> str:
                return " / ".join(f"{x[key]:.0f}" for x in ranks)

            print(
                f"| {preset} | {r['params_m']:.1f}M | {parallel} | "
                f"{max(x['step_s'] for x in ranks):.3f} | {each('state_mb')} | "
                f"{each('peak_rss_mb')} | {each('rss_growth_mb')} |",
                flush=True,
            )
    print(f"\n    python bench/bench_parallel.py --models {a.models} --steps {a.steps} "
          f"--seq-len {a.seq_len} --micro-batch {a.micro_batch}")  # fmt: skip


if __name__ == "__main__":
    main()
