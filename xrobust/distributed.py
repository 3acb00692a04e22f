"""Process-group helpers. Every launcher (deepspeed, torchrun, srun, plain python) ends up here."""

from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> None:
    """Join the process group the launcher set up; a plain `python` run becomes a 1-rank group."""
    if dist.is_initialized():
        if dist.get_world_size() == 1:  # joined earlier in this process (tests call the CLI in-process)
            for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
                os.environ.setdefault(key, value)  # DeepSpeed reads them again
        return
    import deepspeed

    from .kernels.builds import build_deepspeed_comm_ops

    build_deepspeed_comm_ops()  # guarded against a killed earlier build; deepspeed's own build is not
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:
        from .launch.env import distributed_env_from_slurm

        distributed_env_from_slurm()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "RANK" not in os.environ:
        # one process: a file store, so no TCP port can be taken by someone else in the meantime
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", str(_free_port())))
        store = tempfile.NamedTemporaryFile(prefix="xrobust-pg-", delete=False)
        store.close()
        os.unlink(store.name)
        deepspeed.init_distributed(dist_backend=backend, verbose=False, init_method=f"file://{store.name}",
                                   rank=0, world_size=1)
    else:
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
        _unlink_shm_workspace()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def shm_workspace_path(rank: int) -> str:
    """DeepSpeed's CPU shared-memory all-reduce workspace of `rank` (shm.cpp: SHM_BUFFER_NAME_uid_
    MASTER_ADDR_MASTER_PORT_rank), created when every rank is on one node (LOCAL_SIZE = world)."""
    return (f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{os.environ.get('MASTER_ADDR', '')}_"
            f"{os.environ.get('MASTER_PORT', '')}_{rank}")


def _unlink_shm_workspace() -> None:
    """Unlink this rank's workspace name once every rank has mapped every other's.

    DeepSpeed never unlinks it, so each job left 66 MB per rank in /dev/shm (memory, on tmpfs)
    for the machine's lifetime. The mappings stay valid after the name is gone, and the kernel
    frees the memory when the last process unmaps it, however the job ends."""
    if os.environ.get("LOCAL_SIZE") != str(dist.get_world_size()):  # the condition shm.cpp uses
        return
    dist.barrier()  # every rank returned from shm_initialize: all peers' workspaces are mapped
    try:
        os.unlink(shm_workspace_path(dist.get_rank()))
    except FileNotFoundError:  # the shm op was not built, or this rank created none
        pass


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when any rank says True (used for preemption and early stopping)."""
    if not dist.is_initialized() or world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj):
    if not dist.is_initialized() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    if not dist.is_initialized() or world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
