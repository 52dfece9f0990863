"""Process-group set-up: NCCL on GPUs, gloo on CPU, chosen from what the machine has.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (and the rendezvous); a plain
`python -m train` is one process with no process group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str | None = None  # the process group's backend; None without one

    def __str__(self) -> str:
        return f"{self.world_size} x {self.device.type}" + (
            f" ({self.backend})" if self.backend else ""
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(device: str = "auto", *, group_of_one: bool = False) -> Dist:
    """Joins the process group torchrun describes (if any) and picks this rank's device.

    `device`: "auto" takes `cuda:LOCAL_RANK` when CUDA is available, else the CPU.
    `group_of_one`: a single process still gets a (one-rank, in-memory) process group; FSDP's
    device mesh needs one.
    """
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but CUDA is not available")
    if use_cuda:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
        # NOTE: N ranks on one CPU each spawning a thread per core oversubscribe it, and an
        # oversubscribed OpenMP pool spins: a tiny-model matmul went from 0.2 ms to 16 ms on a
        # busy 2-core machine. Share the cores, unless OMP_NUM_THREADS says otherwise.
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if use_cuda:
        # TF32 for the fp32 matmuls that bf16 autocast leaves in fp32 (and all of --dtype fp32).
        torch.set_float32_matmul_precision("high")
    if world > 1 and not dist.is_initialized():
        # NOTE: on GPUs, NCCL for CUDA tensors (gradients, loss sums) and gloo for the few CPU
        # tensors (the step's target counts, the stop flag): NCCL alone rejects CPU tensors, and
        # moving them to the GPU would add a host-device sync per step.
        backends = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
        dist.init_process_group(backends, device_id=dev if use_cuda else None)
    elif group_of_one and not dist.is_initialized():
        store = dist.HashStore()  # type: ignore[attr-defined]
        one = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
        dist.init_process_group(one, store=store, rank=0, world_size=1)
    backend = str(dist.get_backend()) if dist.is_initialized() else None
    return Dist(rank, world, local_rank, local_world, dev, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(t: torch.Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce; a no-op without a process group."""
    if dist.is_initialized():
        dist.all_reduce(t, op=op)
    return t


def all_gather_object(obj: object) -> list[object]:
    """Every rank's `obj`, in rank order (`[obj]` without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank `src`'s `obj` on every rank (`obj` itself without a process group)."""
    if not dist.is_initialized():
        return obj
    box: list[object] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def agree_min_max(value: int) -> tuple[int, int]:
    """The smallest and largest `value` over all ranks (one all-reduce of two integers)."""
    t = torch.tensor([value, -value], dtype=torch.int64)
    all_reduce(t, dist.ReduceOp.MAX)
    return -int(t[1]), int(t[0])


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if dist.is_initialized() else 0
