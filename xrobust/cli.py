"""The `xrobust` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from . import errors
from .errors import XRobustError

# module path -> each exposes add_parsers(subparsers); a handler is set with set_defaults(func=...).
# One module per CLI area; training's commands (train, pipeline) live with the pipeline they run.
COMMAND_MODULES = [
    "xrobust.commands.tasks",
    "xrobust.commands.data",
    "xrobust.pipeline",
    "xrobust.commands.demo",
    "xrobust.commands.evaluate",
    "xrobust.commands.bench",
    "xrobust.commands.slurm",
    "xrobust.commands.wandb",
    "xrobust.commands.study",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrobust", description=__doc__)
    # `deepspeed --module xrobust.cli` puts --local_rank before the subcommand; ranks come from the env
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parsers(sub)
    return parser


# Warnings the libraries raise about their own internals (DeepSpeed calling a deprecated torch
# API, transformers advisories): a user of the CLI cannot act on them. xrobust's own warnings, about
# the user's inputs, are untouched.
LIBRARIES = r"(torch|deepspeed|transformers|datasets|huggingface_hub|accelerate|tokenizers|wandb|" \
            r"sentencepiece|seqeval|sklearn|numpy|matplotlib|triton|pydantic)(\.|$)"


def _quiet_libraries() -> None:
    """Our own progress bars show the work; the libraries' per-file bars and advisories are noise.

    Runs in every process the CLI starts, launched ranks included. `python -W ...` or
    PYTHONWARNINGS (e.g. PYTHONWARNINGS=default) turns the warning filters off again."""
    for var in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)  # about code, never about a user's input
    warnings.filterwarnings("ignore", category=UserWarning, module=LIBRARIES)
    # torch's C++ advisories name the Python line that called into torch, ours included
    warnings.filterwarnings("ignore", message=r"(?s).*\(Triggered internally at ", category=UserWarning)


def _say(line: str, *, every_rank: bool = False) -> None:
    """Rank 0 speaks for all (every rank meets the same bad input); a rank's own failure is told by
    that rank."""
    if "tqdm" in sys.modules:  # progress bars cut short by the failure: close them first, the error comes last
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    rank = os.environ.get("RANK", "0")
    if rank == "0":
        print(line, file=sys.stderr, flush=True)
    elif every_rank:
        print(line.replace("error: ", f"error: (rank {rank}) ", 1), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The one boundary: every failure ends as `error: ...` on stderr and a non-zero exit code."""
    from .launch.env import PREEMPTED_EXIT_CODE
    from .training.signals import FLAG, Preempted

    _quiet_libraries()
    errors.set_log_dir(None)  # until a command opens a run directory
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XRobustError as exc:
        _say(f"error: {exc}")
        return 2
    except Preempted as exc:
        _say(str(exc))
        return PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        _say("error: interrupted (Ctrl-C): stopped at once, without a checkpoint", every_rank=True)
        return 130
    except Exception as exc:  # not ours (torch, transformers, pyarrow, a bug): one line, traceback to a log
        log = errors.write_traceback(exc)
        where = f" (traceback in {log})" if log else ""
        _say(f"error: {errors.describe(exc)}{where}", every_rank=True)
        return 2
    finally:
        FLAG.uninstall()  # the command is over (matters when main is called in-process, as tests do)


def _leave_process_group() -> None:
    """Destroy the process group before the interpreter exits. Left to C++ static destructors at exit,
    gloo's threads can abort a rank after its work is done ("terminate called without an active
    exception", seen on a resumed 2-node Slurm job), and srun --kill-on-bad-exit then fails the job."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # exiting anyway; the exit code is the command's
            pass


def run() -> None:
    """The process entry (console script, `python -m xrobust.cli`, every launcher's ranks)."""
    from .distributed import device
    from .host_memory import configure_for
    from .training.memory_trace import start_from_env

    configure_for(device().type)  # before any model tensor is allocated
    start_from_env()
    code = main()
    _leave_process_group()
    sys.exit(code)


if __name__ == "__main__":
    run()
