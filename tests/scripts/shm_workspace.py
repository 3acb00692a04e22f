"""Run under `deepspeed --num_gpus 2`: DeepSpeed's shared-memory all-reduce workspace is mapped but
its /dev/shm name is gone once xrobust has joined the process group, and it still reduces."""

import os
import sys

import torch

from xrobust.distributed import init_distributed, shm_workspace_path

init_distributed()
import deepspeed.comm as ds_comm  # noqa: E402
import torch.distributed as dist  # noqa: E402

rank = dist.get_rank()
path = shm_workspace_path(rank)
with open("/proc/self/maps", encoding="utf-8") as fh:
    mapped = [line for line in fh if path in line]
assert mapped, f"rank {rank}: DeepSpeed's workspace {path} was never mapped (shm op not used?)"
assert all(line.rstrip().endswith("(deleted)") for line in mapped), mapped
assert not os.path.exists(path), path
t = torch.full((4,), float(rank + 1))
ds_comm.inference_all_reduce(t)
assert t.tolist() == [3.0] * 4, t
dist.barrier()
dist.destroy_process_group()
print(f"rank {rank}: ok", file=sys.stderr)
