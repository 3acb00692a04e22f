"""Non-finite training: count steps whose loss or gradient is NaN/inf (or whose update DeepSpeed
skipped), stop when the phase's budget is spent, and say what the likely cause is.

A step is non-finite when the loss averaged over all ranks is not finite, when the global gradient
norm is not finite, or when DeepSpeed skipped the optimizer step. Under fp16 with dynamic loss
scaling a skipped step with a finite loss is the loss scaler calibrating itself, not a failure.
"""

from __future__ import annotations

import math

from ..errors import TrainingError


def _finite(x) -> bool:
    return x is None or math.isfinite(x)


class NonFiniteMonitor:
    def __init__(self, phase, phase_key: str, total_steps: int, dynamic_loss_scale: bool = False):
        self.phase, self.key, self.total_steps = phase, phase_key, total_steps
        self.dynamic_loss_scale = dynamic_loss_scale
        self.nonfinite = 0  # non-finite steps in this phase
        self.consecutive = 0
        self.finite = 0  # steps that updated the model with finite numbers
        self.first: dict | None = None  # the first non-finite step's record

    def state_dict(self) -> dict:
        return {"nonfinite": self.nonfinite, "consecutive": self.consecutive, "finite": self.finite,
                "first": self.first}

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {}
        self.nonfinite, self.consecutive = state.get("nonfinite", 0), state.get("consecutive", 0)
        self.finite, self.first = state.get("finite", 0), state.get("first")

    def is_nonfinite(self, record: dict, skipped: bool) -> bool:
        loss_ok = all(_finite(record.get(k)) for k in ("loss", "clean_loss", "adv_loss"))
        if not loss_ok or not _finite(record.get("grad_norm")):
            return True
        return skipped and not self.dynamic_loss_scale

    def count(self, record: dict, skipped: bool) -> None:
        """Count this step (record: the step's record, reduced over ranks); adds `nonfinite_steps`."""
        if self.is_nonfinite(record, skipped):
            self.nonfinite += 1
            self.consecutive += 1
            if self.first is None:
                self.first = dict(record, finite_before=self.finite)
        else:
            self.consecutive = 0
            if not skipped:
                self.finite += 1
        record["nonfinite_steps"] = self.nonfinite

    def check(self, record: dict) -> None:
        """Raise TrainingError once the phase's budget of non-finite steps is spent."""
        budget = self.phase.nonfinite
        if budget.max_consecutive and self.consecutive >= budget.max_consecutive:
            self._fail(record, f"{self.consecutive} consecutive non-finite steps "
                               f"(phases.{self.key}.nonfinite.max_consecutive = {budget.max_consecutive})")
        if budget.max_fraction < 1 and self.nonfinite > budget.max_fraction * self.total_steps:
            self._fail(record, f"{self.nonfinite} non-finite step(s) of {self.total_steps}, more than "
                               f"phases.{self.key}.nonfinite.max_fraction = {budget.max_fraction:g}")

    def check_complete(self, best: dict | None) -> None:
        """At the end of a phase: it must have learned something."""
        if self.finite == 0:
            self._fail(None, f"none of its {self.total_steps} optimizer steps was finite; the model is its "
                             "untrained start")
        if best is not None and best.get("finite_steps") == 0:
            self._fail(None, f"its best English dev score ({best['score']:.2f} at step {best['step']}) is the "
                             "untrained start's: every step before it was non-finite")

    # -- the message ----------------------------------------------------------------------------------
    def _fail(self, record: dict | None, why: str):
        first = self.first or {}
        where = ""
        if record is not None:
            where = f"; at step {record['step']} the loss was {record.get('loss')}"
            if record.get("grad_norm") is not None:
                where += f" and the gradient norm {record['grad_norm']}"
        if first:
            where += f"; first non-finite step: {first.get('step')} (loss {first.get('loss')}"
            where += f", task {first['task']})" if first.get("task") else ")"
        raise TrainingError(f"phases.{self.key}: training stopped: {why}{where}. Likely cause: {self.cause()}. "
                            "The phase is not complete: no model was exported as its result")

    def cause(self) -> str:
        p, adv = self.phase, self.phase.adversarial
        key = f"phases.{self.key}"
        first = self.first or {}
        if not first:
            return "nothing was learned; check the learning rate, the data and the model"
        clean_ok = _finite(first.get("clean_loss", first.get("loss")))
        perturbed = adv.method != "none" and bool(first.get("adv_active"))
        settings = (f"{key}.adversarial.method = {adv.method}: step_size {adv.step_size:g}, init_mag "
                    f"{adv.init_mag:g}, max_norm {adv.max_norm:g}{' (no projection)' if adv.max_norm == 0 else ''}")
        if perturbed and clean_ok and not _finite(first.get("adv_loss")):
            return (f"the adversarial perturbation ({settings}) makes the adversarial loss non-finite while the "
                    "clean loss is finite; use smaller values")
        if first.get("finite_before", 0) == 0 and not clean_ok:
            if perturbed:
                return (f"the loss was non-finite from the first step, with the adversarial perturbation active "
                        f"({settings}): most likely it is too large (adversarial.start_step > 0 shows the plain "
                        "loss first); otherwise the model's weights (model.name_or_path), model.dtype or the inputs")
            return ("the loss is non-finite before any update: check the model's weights "
                    "(model.name_or_path), model.dtype (fp16 overflows easily) and the inputs")
        clip = f"{key}.max_grad_norm = {p.max_grad_norm:g}" + (" (no clipping)" if p.max_grad_norm == 0 else "")
        cause = (f"the updates diverged: the learning rate is too high ({key}.lr = {p.lr:g}, warmup_ratio "
                 f"{p.warmup_ratio:g}) or gradients are not clipped enough ({clip})")
        if adv.method != "none":
            cause += f", or the adversarial perturbation is too large ({settings})"
        return cause
