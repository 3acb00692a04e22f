"""A tiny ZeRO-3 training on CPU for launcher tests: 3 steps, prints the losses on rank 0.

Works under `deepspeed`, `torchrun` and plain `srun` (ranks from SLURM_* via
xrobust.launch.env.distributed_env_from_slurm). Implements the preemption contract: USR1/TERM set
a flag, the ranks agree at a step boundary (all_reduce MAX), rank 0 touches
$XROBUST_PREEMPT_MARKER, and every rank exits 3.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

from xrobust.launch.env import PREEMPTED_EXIT_CODE, distributed_env_from_slurm

parser = argparse.ArgumentParser()
parser.add_argument("--local_rank", type=int, default=None)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step (preemption tests)")
parser.add_argument("--state", default=None, help="file holding the last finished step (resume tests)")
parser.add_argument("--resume", action="store_true")
args, _ = parser.parse_known_args()

# handlers first: a USR1 that arrives during the slow imports below must not kill the rank
flag = {"sig": None}
for sig in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(sig, lambda s, f: flag.__setitem__("sig", s))

distributed_env_from_slurm()
os.environ.setdefault("DS_ACCELERATOR", "cpu")
import deepspeed  # noqa: E402
import torch.distributed as dist  # noqa: E402

from xrobust.distributed import init_distributed  # noqa: E402

init_distributed()
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
config = {
    "train_micro_batch_size_per_gpu": 4,
    "gradient_accumulation_steps": 1,
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "optimizer": {"type": "SGD", "params": {"lr": 0.1}},
    "zero_allow_untested_optimizer": True,
}
engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)

gen = torch.Generator().manual_seed(123)
data = torch.randn(args.steps * world * 4, 8, generator=gen)
target = data.sum(dim=1, keepdim=True).sin()
start = 0
if args.resume and args.state and Path(args.state).exists():
    start = int(Path(args.state).read_text())
losses = []
if rank == 0:
    print(f"STARTED at step {start}", flush=True)
for step in range(start, args.steps):
    lo = (step * world + rank) * 4
    x, y = data[lo:lo + 4], target[lo:lo + 4]
    loss = torch.nn.functional.mse_loss(engine(x), y)
    engine.backward(loss)
    engine.step()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    losses.append(round(mean.item() / world, 7))
    if args.sleep:
        time.sleep(args.sleep)
    stop = torch.tensor([1.0 if flag["sig"] is not None else 0.0])
    dist.all_reduce(stop, op=dist.ReduceOp.MAX)
    if stop.item() > 0 and step + 1 < args.steps:
        if rank == 0:
            if args.state:
                Path(args.state).write_text(str(step + 1))
            marker = os.environ.get("XROBUST_PREEMPT_MARKER")
            if marker:
                Path(marker).touch()
            print(f"PREEMPTED at step {step + 1}", flush=True)
        dist.barrier()
        sys.exit(PREEMPTED_EXIT_CODE)
if rank == 0:
    print("LOSSES " + json.dumps({"world": world, "start": start, "losses": losses}), flush=True)
