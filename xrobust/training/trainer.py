"""One training phase on a DeepSpeed engine: sampling, micro-steps, evaluation, checkpoints, export."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .. import distributed as dist
from ..errors import CheckpointError, context
from ..io import append_jsonl, atomic_directory, atomic_write_json
from ..modeling import XRobustModel, head_spec_for, save_heads
from . import checkpoint
from ..data.stats import write_phase_report
from .data import PhaseData
from .engine import ZeroInitContext, build_engine, consolidated_state_dict, gradient_accumulation, load_encoder, \
    resolve_ds_config, resolve_dtype
from .nonfinite import NonFiniteMonitor
from .signals import FLAG, Preempted, mark_preempted

from .rundir import COMPLETE, MODEL_DIR


@dataclass
class LoopState:
    """Where the loop stands; a checkpoint records it (loop_state.json) and a resumed run starts from it."""

    step: int = 0  # optimizer steps taken
    best: dict | None = None  # the best English dev evaluation: {"score", "step", "finite_steps"}
    evals_without_improvement: int = 0  # for early stopping (phase.patience)
    last_eval_step: int | None = None
    data: dict | None = None  # PhaseData.state_dict() at the checkpoint
    nonfinite: dict | None = None  # NonFiniteMonitor.state_dict() at the checkpoint

    @classmethod
    def from_dict(cls, recorded: dict) -> "LoopState":
        """A checkpoint's loop state; older checkpoints lack some keys (their defaults apply)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in recorded.items() if key in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build_strategy(adv_cfg, model):
    from ..adversarial import build_strategy

    return build_strategy(adv_cfg, model)


class Trainer:
    def __init__(self, cfg, *, phase_key: str, phase, run_dir: Path, init_encoder: str, tokenizer, evaluate_dev,
                 tracker=None, step_offset: int = 0):
        """One phase (`phase`, the config's phases.<phase_key>, or the part of it one head trains) in
        `run_dir`, starting from the encoder `init_encoder` (a model directory or hub id).
        evaluate_dev(model, phase_data, batch_size) -> {task: {metric: value, "selection": score}}
        scores the English dev sets (xrobust.evaluation.predict.evaluate_dev; the pipeline passes it,
        as evaluation is a layer above training). `step_offset`: the W&B step this phase starts after."""
        self.cfg, self.phase_key, self.phase = cfg, phase_key, phase
        self.evaluate_dev = evaluate_dev
        self.run_dir = Path(run_dir)
        self.init_encoder = init_encoder
        self.tokenizer = tokenizer
        self.tracker = tracker
        self.step_offset = step_offset  # W&B steps keep increasing across the phases of a pipeline
        self.world = dist.world_size()
        self.gas = gradient_accumulation(phase, self.world, phase_key)
        self.dtype = resolve_dtype(cfg.model.dtype)
        with context(f"preparing the training data of phases.{phase_key}"):
            self.data = PhaseData(cfg, phase, tokenizer, seed=cfg.seed)
        write_phase_report(self.run_dir, self.data.reports, tracker, prefix=f"{phase_key}/")
        self.total_steps = phase.max_steps or max(1, math.ceil(phase.epochs * self.data.batches_per_epoch()))

    # -- construction -------------------------------------------------------------------------------
    def _build(self):
        ds_config = resolve_ds_config(self.cfg.deepspeed, self.phase, self.world, self.dtype, self.phase_key)
        self._zero_ctx = ZeroInitContext(ds_config)
        torch.manual_seed(self.cfg.seed)  # heads start identical on every rank and in every world size
        # random weights only for the configured model, and only when the config asks for them
        configured = self.init_encoder == self.cfg.model.name_or_path
        encoder = load_encoder(self.init_encoder, self.dtype, self.cfg.model.dropout,
                               random_init=self.cfg.model.random_init and configured,
                               **({} if configured else {"missing_hint": "the phase that exported it is incomplete"}))
        heads = {}
        for spec in self.data.specs:
            heads.setdefault(spec.head, head_spec_for(spec))
        dropout = self.cfg.model.dropout if self.cfg.model.dropout is not None else \
            getattr(encoder.config, "hidden_dropout_prob", 0.1)
        model = XRobustModel(encoder, list(heads.values()), dropout)  # DeepSpeed casts to bf16 when enabled
        if self.phase.freeze_embeddings:
            model.word_embeddings().weight.requires_grad_(False)
        self.engine, self.optimizer, self.scheduler = build_engine(model, self.phase, ds_config, self.total_steps)
        self.strategy = _build_strategy(self.phase.adversarial, self.engine.module)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, resume: bool = False, fresh_if_nothing_to_resume: bool = False) -> Path:
        self._zero_ctx = None
        try:
            with context(f"building the model and engine of phases.{self.phase_key} from {self.init_encoder}"):
                self._build()
            return self._train(resume, fresh_if_nothing_to_resume)
        finally:
            if self._zero_ctx is not None:
                self._zero_ctx.close()

    def _resume_state(self, ckpt_root: Path, metrics_file: Path, fresh_if_nothing_to_resume: bool) -> LoopState | None:
        """The loop state of the newest usable checkpoint; None to start at step 0, which --resume
        allows only where nothing was trained yet (or when asked)."""
        tag = checkpoint.latest(ckpt_root)
        if tag:
            state = LoopState.from_dict(checkpoint.load(self.engine, ckpt_root, tag))
            self.data.load_state_dict(state.data)
            if dist.is_main():
                print(f"resumed from {ckpt_root / tag} at step {state.step}", flush=True)
            return state
        steps = _recorded_steps(metrics_file)
        if not steps:
            return None
        why = " (save_every is 0: this phase writes no periodic checkpoints)" if not self.phase.save_every else ""
        if not fresh_if_nothing_to_resume:
            raise CheckpointError(f"{self.run_dir}: nothing to resume: metrics.jsonl records {steps} training steps "
                                  f"but {ckpt_root} holds no usable checkpoint{why}; pass --fresh-if-nothing-to-resume "
                                  "to train this phase again from step 0")
        if dist.is_main():
            kept = metrics_file.with_name(f"metrics.abandoned-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
            metrics_file.rename(kept)
            print(f"warning: {self.run_dir}: no usable checkpoint; training phases.{self.phase_key} again from step 0 "
                  f"(the {steps} steps recorded before are kept in {kept.name})", file=sys.stderr, flush=True)
        dist.barrier()
        return None

    def _train(self, resume: bool, fresh_if_nothing_to_resume: bool) -> Path:
        ckpt_root = self.run_dir / "checkpoints"
        metrics_file = self.run_dir / "metrics.jsonl"
        state = LoopState()
        if resume:
            state = self._resume_state(ckpt_root, metrics_file, fresh_if_nothing_to_resume) or state
        self.monitor = NonFiniteMonitor(self.phase, self.phase_key, self.total_steps, _dynamic_loss_scale(self.engine))
        # a checkpoint written before steps were counted: its steps count as finite
        self.monitor.load_state_dict(state.nonfinite or {"finite": state.step})
        flag = FLAG.install()
        bar = tqdm(total=self.total_steps, initial=state.step, desc=f"{self.phase_key}",
                   disable=not dist.is_main(), dynamic_ncols=True)
        try:
            while state.step < self.total_steps:
                t0 = time.perf_counter()
                with context(f"training phases.{self.phase_key} at step {state.step + 1}"):
                    record, skipped = self._optimizer_step()
                state.step += 1
                step = state.step
                record.update(step=step, lr=self.scheduler.get_last_lr()[0],
                              examples_per_s=self.phase.batch_size / (time.perf_counter() - t0))
                self.monitor.count(record, skipped)
                if dist.is_main():
                    append_jsonl(metrics_file, record)
                    if self.tracker:
                        self.tracker.log({f"{self.phase_key}/train/{k}": v for k, v in record.items()
                                          if k not in ("step", "task")}, step=self.step_offset + step)
                self.monitor.check(record)  # past the budget: stop, naming the step, the loss and the cause
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", task=record["task"],
                                ex_s=f"{record['examples_per_s']:.1f}")
                stop = False
                if self.phase.eval_every and step % self.phase.eval_every == 0 and step < self.total_steps:
                    stop = self._evaluate(state, metrics_file)
                preempted = dist.any_rank(flag.set)
                if preempted or (self.phase.save_every and step % self.phase.save_every == 0) or stop:
                    if preempted and dist.is_main():
                        print(f"\nreceived {flag.name if flag.set else 'a signal on another rank'}: writing a "
                              f"checkpoint at step {step}, then stopping", file=sys.stderr, flush=True)
                    state.data = self.data.state_dict()
                    state.nonfinite = self.monitor.state_dict()
                    tag_dir = checkpoint.save(self.engine, ckpt_root, step, state.to_dict(),
                                              self.phase.keep_checkpoints)
                    if preempted:
                        if dist.is_main():
                            mark_preempted()
                        raise Preempted(step, str(tag_dir), flag.name if flag.set else "a signal")
                if stop:
                    break
            if state.last_eval_step != state.step:
                self._evaluate(state, metrics_file)
        finally:
            bar.close()
        self.monitor.check_complete(state.best)
        if state.best is None:  # no dev data: keep the last weights
            self._export(self.run_dir / MODEL_DIR)
        if dist.is_main():
            atomic_write_json(self.run_dir / COMPLETE, {"total_steps": self.total_steps, "best": state.best,
                                                        "nonfinite_steps": self.monitor.nonfinite})
        dist.barrier()
        return self.run_dir / MODEL_DIR

    def _optimizer_step(self) -> tuple[dict, bool]:
        """One optimizer step: (the step's statistics averaged over every micro-batch of all ranks,
        whether DeepSpeed skipped the update)."""
        task, micro_batches = self.data.next_step(rank=dist.rank(), world=self.world, gas=self.gas)
        skipped_before = self.engine.skipped_steps
        totals: dict[str, float] = {}
        for batch in micro_batches:
            batch = {k: v.to(self.engine.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            stats = self.strategy.step(self.engine, batch)
            # once per micro-batch, as DeepSpeed requires: it counts micro-steps and steps the
            # optimizer and the LR schedule only at the gradient-accumulation boundary (the last one)
            self.engine.step()
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        # mean over every micro-batch of the global batch, all ranks: identical for any world size
        keys = sorted(totals)
        t = torch.tensor([totals[k] for k in keys], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        n = len(micro_batches) * self.world
        record = {k: float(v) / n for k, v in zip(keys, t.tolist())}
        for k in self.strategy.summed_stats:  # counts: the total, not the mean
            if k in record:
                record[k] = int(round(record[k] * n))
        record["task"] = task
        norm = self.engine.get_global_grad_norm()  # global, after the step; None where not computed
        if norm is not None:
            record["grad_norm"] = float(norm)
        return record, self.engine.skipped_steps != skipped_before

    # -- evaluation and export -------------------------------------------------------------------------
    def _evaluate(self, state: LoopState, metrics_file: Path) -> bool:
        """English dev evaluation; returns True when early stopping says stop."""
        if not self.data.has_dev():
            return False
        self.engine.eval()
        with context(f"English dev evaluation of phases.{self.phase_key} at step {state.step}"):
            scores = self.evaluate_dev(self.engine.module, self.data, batch_size=self.phase.micro_batch_size * 2)
        self.engine.train()
        selection = sum(s["selection"] for s in scores.values()) / len(scores)
        step = state.step
        state.last_eval_step = step
        improved = state.best is None or selection > state.best["score"]
        if improved:
            state.best = {"score": selection, "step": step, "finite_steps": self.monitor.finite}
            state.evals_without_improvement = 0
            self._export(self.run_dir / MODEL_DIR)
        else:
            state.evals_without_improvement += 1
        if dist.is_main():
            record = {"step": step, "eval": scores, "selection": selection, "best_step": state.best["step"]}
            append_jsonl(metrics_file, record)
            if self.tracker:
                flat = {f"{self.phase_key}/dev/{t}/{m}": v for t, s in scores.items() for m, v in s.items()}
                self.tracker.log({**flat, f"{self.phase_key}/dev/selection": selection}, step=self.step_offset + step)
        return bool(self.phase.patience) and state.evals_without_improvement >= self.phase.patience

    def _export(self, out_dir: Path) -> None:
        """Consolidate ZeRO-3 shards and write encoder (HF) + heads + tokenizer, atomically replacing out_dir."""
        state = consolidated_state_dict(self.engine)
        if dist.is_main():
            enc = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
            heads = {k[len("heads."):]: v for k, v in state.items() if k.startswith("heads.")}
            with atomic_directory(out_dir) as tmp:
                self.engine.module.encoder.save_pretrained(tmp, state_dict=enc, safe_serialization=True)
                save_heads(self.engine.module, tmp, heads)
                self.tokenizer.save_pretrained(tmp)
        dist.barrier()


def _recorded_steps(metrics_file: Path) -> int:
    """Training steps a phase's metrics.jsonl records (0: nothing trained yet)."""
    if not metrics_file.is_file():
        return 0
    return sum(1 for line in metrics_file.read_text(encoding="utf-8").splitlines() if '"loss"' in line)


def _dynamic_loss_scale(engine) -> bool:
    try:
        return bool(engine.fp16_enabled() and engine.dynamic_loss_scale())
    except AttributeError:
        return False


def load_trained(model_dir: Path, dtype=torch.float32) -> XRobustModel:
    """A finished phase's model for evaluation (single process, no DeepSpeed)."""
    from ..modeling import load_head_specs, load_heads_state

    model_dir = Path(model_dir)
    specs = load_head_specs(model_dir)
    encoder = load_encoder(str(model_dir), dtype, None,
                           missing_hint="the phase's export is incomplete: train it again or restore its model/")
    model = XRobustModel(encoder, specs, dropout=0.0)
    missing, unexpected = model.heads.load_state_dict(load_heads_state(model_dir), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{model_dir}: head weights do not match heads.json (missing {missing}, "
                              f"unexpected {unexpected})")
    return model.eval()
