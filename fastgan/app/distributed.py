"""The process group of a `fastgan train` run launched by torchrun: which rank this is,
how to join the others, and how to turn a lost peer into one clear error.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them the
run is one process and nothing here touches torch.distributed."""
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world_from_environment() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ["RANK"])
    return World(rank, size, int(os.environ.get("LOCAL_RANK", rank)))


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per local rank; an error naming the count when there are too few."""
    if device.type != "cuda" or not world.active:
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise ValueError(f"local rank {world.local_rank} has no GPU: this machine has {count}; start at most {count} "
                         "processes per node (torchrun --nproc_per_node)")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def join(world: World, device: torch.device, timeout_s: float) -> None:
    """NCCL between GPUs, gloo on CPU. A collective that waits longer than timeout_s for
    another rank fails instead of hanging (NCCL's watchdog aborts the process)."""
    if not world.active or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout_s),
                            **kwargs)


def wrap(module: torch.nn.Module, device: torch.device, sync_buffers_each_forward: bool):
    """DistributedDataParallel around module. Buffers are made equal at the start either way;
    the per-forward broadcast of rank 0's buffers is what sync_buffers_each_forward sets
    (torch 2.13 renamed broadcast_buffers to forward_sync_buffers)."""
    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=sync_buffers_each_forward)
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=sync_buffers_each_forward)


def wait_for_all(world: World) -> None:
    """Returns once every rank has got here, so that a run that ends normally tears its process
    group down only after every rank is done with it. (Once, in CI, a rank aborted at exit
    after the last step, "terminate called without an active exception"; not reproduced in 17
    runs since, and its cause not found: this ordering is the usual guard against teardown
    races.)"""
    if world.active and dist.is_initialized():
        dist.barrier()


def leave(world: World) -> None:
    if world.active and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except RuntimeError:  # a dead peer can make the teardown fail too; there is nothing left to save
            pass


def mean_over_ranks(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.active:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world.size
    return t


def broadcast_from_main(obj, world: World):
    """rank 0's object on every rank (checkpoints: only rank 0 needs to see the run folder)."""
    if not world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


_PEER_FAILURE_MARKERS = ("connection closed", "connection reset", "broken pipe", "timed out", "timeout",
                         "nccl", "gloo", "socket", "peer")


def is_peer_failure(exc: BaseException) -> bool:
    """An error from a collective because another rank exited or stopped answering."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _PEER_FAILURE_MARKERS)
