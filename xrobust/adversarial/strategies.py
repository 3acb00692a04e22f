"""Training strategies: one micro-step of plain, adversarial or noise-robust training.

Each method is a Strategy subclass with its own config dataclass (`Config`), whose keys are the
names of the method's paper; the config lists its own problems (`problems()`), so a method's
settings are defined and checked in one place. `build_strategy(cfg, model)` returns the Strategy;
`strategy.step(engine, batch)` runs the forward(s) and engine.backward(s) of one micro-batch and
returns float statistics; the training loop then calls engine.step(). A method of one's own is a
Strategy subclass in one's own module, named in the config as `method: package.module:ClassName`
(docs/EXTENDING.md). See docs/ADVERSARIAL.md for each method and its paper.

DeepSpeed rules followed here (REFERENCE section 6):
- Ascent passes (gradient w.r.t. delta only) run through `engine.module(...)` with
  torch.autograd.grad(loss, delta): no parameter gradients, no GAS/loss scaling, and the engine
  does not count them as a backward.
- Losses that train the parameters go through `engine(...)` + `engine.backward(...)`. A delta
  gradient read off such a backward (FGM, FreeLB) is scaled by 1/GAS and the fp16 loss scale;
  `grad_scale(engine)` undoes it so that every reported/used delta gradient is in loss units.
- Several engine.backward calls in one micro-step are merged into one gradient reduction with
  engine.coalesce_grad_reduction() where DeepSpeed supports it (`can_coalesce`).

The idle-head contract: every objective a strategy trains is computed from the logits (or the
loss) of training-mode forwards of the model. XRobustModel adds to those logits a zero that
depends on every head it did not use (XRobustModel._idle_heads_term), so whatever the number of
forwards, doubled batches or KL terms, every idle head gets a real zero gradient each
micro-step and ZeRO-3 does not step it with a stale one (tests/scripts/adv_zero3_equivalence.py
checks this for every method).
"""

from __future__ import annotations

import contextlib
import importlib
import math
from dataclasses import dataclass, field, fields
from typing import ClassVar, Optional

import torch

from ..errors import ConfigError
from ..kernels import perturbation_init, perturbation_step_with_status
from ..kernels.api import BACKENDS, NORMS
from ..modeling.model import DeltaInjector, delta_shape, embedding_mask
from .divergence import KINDS as DIVERGENCES

NOISES = ("uniform", "normal")  # random perturbations: U(-m, m) or N(0, m^2) per coordinate


def _f(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def per_example_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.detach().float().flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def grad_scale(engine) -> float:
    """Factor by which engine.backward(loss) scales the gradient of `loss`: 1/GAS times the fp16
    loss scale. A delta gradient read off an engine.backward is multiplied by its inverse."""
    scale = 1.0 / engine.gradient_accumulation_steps()
    fp16 = getattr(engine, "fp16_enabled", None)
    if fp16 is not None and fp16():
        opt = engine.optimizer
        cur = getattr(opt, "cur_scale", None)
        if cur is None:
            cur = getattr(opt, "loss_scale", 1.0)
        scale *= float(cur)
    return scale


def can_coalesce(engine) -> bool:
    """Whether engine.coalesce_grad_reduction() may wrap the backwards of one micro-step.

    DeepSpeed >= 0.19.2 supports it for ZeRO 1/2/3 with the ZeRO optimizer (not the fp16/bf16
    wrappers) and managed gradient accumulation. Its contract is one with-block per optimizer
    step; ZeRO-3 accumulates the flushed partitions across micro-steps (micro_step_id > 0), which
    our 2-rank test checks with GAS 2. For ZeRO 1/2 we coalesce only when GAS == 1, where one
    micro-step is one optimizer step.
    """
    if not hasattr(engine, "coalesce_grad_reduction") or not hasattr(engine, "zero_optimization_stage"):
        return False
    stage = int(engine.zero_optimization_stage())
    if stage not in (1, 2, 3):
        return False
    if not hasattr(engine.optimizer, "_coalesce_grad_reduction"):
        return False
    managed = getattr(engine, "managed_gradient_accumulation", None)
    if managed is not None and not managed():
        return False
    if getattr(engine, "inside_no_sync_ctxt", False) or getattr(engine, "pipeline_parallelism", False):
        return False
    return stage == 3 or engine.gradient_accumulation_steps() == 1


@contextlib.contextmanager
def _frozen(module: torch.nn.Module):
    """Parameters of `module` do not require grad inside the block (restored after)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# -- method configs --------------------------------------------------------------------------------
# A setting is a dataclass field whose metadata says what values it takes; MethodConfig.problems()
# checks every field from it, so each method's config is checked where it is defined.

def setting(default, check, *choices):
    """check: "positive" / "nonnegative" (finite numbers), "count" (int >= 1), "step" (int >= 0),
    "flag" (bool), "required" (set; `choices` holds its description) or "choice" (one of `choices`)."""
    return field(default=default, metadata={"check": check, "choices": choices})


def _problem(check: str, choices: tuple, v) -> str | None:
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if check in ("positive", "nonnegative"):
        if not number or not math.isfinite(v) or v < 0 or (check == "positive" and v == 0):
            return f"expected a finite value {'> 0' if check == 'positive' else '>= 0'}, got {v!r}"
    elif check in ("count", "step"):
        low = 1 if check == "count" else 0
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            return f"expected an integer >= {low}, got {v!r}"
    elif check == "flag":
        if not isinstance(v, bool):
            return f"expected true or false, got {v!r}"
    elif check == "required":
        if not v:
            return f"missing required value: {choices[0]}"
    elif v not in choices:
        return f"{v!r} is not one of: {', '.join(choices)}"
    return None


@dataclass
class MethodConfig:
    """The settings of a method: `method` plus the fields a subclass declares. Plain training's
    config (method none) has no other setting."""

    method: str = "none"

    # old flat name -> this method's name, for old config files (xrobust.config.schema.FlatAdversarialConfig;
    # keys of the same name carry over)
    LEGACY: ClassVar[dict[str, str]] = {}

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for every setting this method cannot use."""
        out = []
        for f in fields(self):
            check = f.metadata.get("check")
            message = check and _problem(check, f.metadata["choices"], getattr(self, f.name))
            if message:
                out.append((f.name, message))
        return out

    @classmethod
    def legacy_problems(cls, flat: dict) -> list[tuple[str, str]]:
        """(key, why) for old flat settings that this method's config cannot express."""
        return []

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class Strategy:
    """Plain training: exactly `out = engine(**batch); engine.backward(out.loss)`.

    `passes(cfg)`: what one micro-step costs, in forward+backward passes of the micro-batch, the
    unit of every cost figure (`xrobust bench`, study cost estimates). Counted as the rows the
    encoder runs over the micro-batch's rows: a training pass is one, an ascent pass (its
    backward gives delta's gradient only, no weight gradients: about 2/3 of a training pass) also
    counts as one, and a doubled batch (R3F) as two."""

    method = "none"
    adversarial = False
    Config = MethodConfig
    summed_stats: tuple[str, ...] = ()  # statistics that are counts: summed over micro-batches, not averaged

    def __init__(self, cfg, model):
        self.cfg = cfg
        self.model = model

    @classmethod
    def passes(cls, cfg) -> float:
        """Forward+backward passes of one micro-step (cfg: this method's Config)."""
        return 1

    @classmethod
    def train_examples(cls, cfg, examples, spec, seed: int):
        """The English training examples this method trains on (a data-level method transforms them)."""
        return examples

    @classmethod
    def train_examples_factor(cls, cfg) -> int:
        """How many training examples `train_examples` makes of each one."""
        return 1

    def step(self, engine, batch: dict) -> dict[str, float]:
        out = engine(**batch)
        engine.backward(out.loss)
        return {"loss": _f(out.loss)}

    def close(self) -> None:
        pass


class EmbeddingPerturbation(Strategy):
    """Shared machinery of the embedding-perturbation methods, and the base of a new one: a subclass
    sets `Config` (a MethodConfig with at least `start_step`) and implements `_adv_step(engine, batch)`
    with the helpers below (`injector.active(delta)`, `_noise`, `_init`, `_ascend`, `_input_grad`,
    `_stats`), and states its cost with `passes(cfg)`; before `start_step` the micro-step is plain
    training (docs/EXTENDING.md)."""

    adversarial = True
    backwards = 1  # engine.backward calls per micro-step (coalesced when > 1)
    summed_stats = ("nonfinite_resets",)

    def __init__(self, cfg, model):
        super().__init__(cfg, model)
        self.injector = DeltaInjector(model.word_embeddings())
        self.hidden = int(model.encoder.config.hidden_size)
        self.generator: torch.Generator | None = None  # None: the global torch RNG
        # merge the reductions of several backwards (adversarial.coalesce: the methods that make several)
        self.coalesce = getattr(cfg, "coalesce", False)
        # Called on every delta gradient before it is used (tests inject non-finite values here).
        self.grad_hook = None
        self._resets = 0
        self._gnorms: list[float] = []

    def close(self) -> None:
        self.injector.remove()

    # -- helpers ---------------------------------------------------------------------------------
    def _reduction_scope(self, engine):
        if self.coalesce and self.backwards > 1 and can_coalesce(engine):
            return engine.coalesce_grad_reduction()
        return contextlib.nullcontext()

    def _zeros(self, batch):
        mask = embedding_mask(batch)
        return torch.zeros(delta_shape(batch, self.hidden), dtype=torch.float32, device=mask.device)

    def _ascent(self) -> tuple[float, float]:
        """(step size, projection radius; 0 = none) of an ascent step."""
        return self.cfg.alpha, self.cfg.epsilon

    def _init(self, batch):
        """FreeLB-style random start of magnitude sigma (zeros when sigma is 0)."""
        if self.cfg.sigma == 0:
            return self._zeros(batch)
        zeros = self._zeros(batch)
        delta = perturbation_init(zeros, embedding_mask(batch), init_mag=self.cfg.sigma, norm=self.cfg.norm,
                                  generator=self.generator, backend=self.cfg.backend)
        return self._project(delta)

    def _project(self, delta):
        """Into the ball of the ascent's radius (per example; per token for SMART's token granularity
        is not needed: its init is far inside). A no-op whenever sigma <= epsilon, as in the papers."""
        r = self._ascent()[1]
        if r <= 0:
            return delta
        if self.cfg.norm == "linf":
            return delta.clamp(-r, r)
        n = delta.flatten(1).norm(dim=1).view(-1, 1, 1)
        return torch.where(n > r, delta * (r / n), delta)

    def _noise(self, batch, magnitude: float, kind: str):
        """Random noise U(-m, m) or N(0, m^2) per coordinate, padding exactly 0."""
        mask = embedding_mask(batch)
        shape = delta_shape(batch, self.hidden)
        if kind == "normal":
            z = torch.randn(shape, generator=self.generator, dtype=torch.float32, device=mask.device) * magnitude
        else:
            z = (torch.rand(shape, generator=self.generator, dtype=torch.float32, device=mask.device) * 2 - 1) * magnitude
        return z * (mask != 0).unsqueeze(-1).to(z.dtype)

    def _ascend(self, delta, grad, batch, granularity="example"):
        """One normalized ascent step + projection. Examples whose delta gradient is non-finite get
        delta = 0 (they continue as clean examples for the rest of this micro-step) and are counted."""
        if self.grad_hook is not None:
            grad = self.grad_hook(grad)
        step_size, radius = self._ascent()
        new, finite = perturbation_step_with_status(
            delta.detach(), grad.detach(), embedding_mask(batch), step_size=step_size,
            max_norm=radius, norm=self.cfg.norm, granularity=granularity, backend=self.cfg.backend)
        bad = ~finite
        if bool(bad.any()):
            self._resets += int(bad.sum())
            new = torch.where(bad.view(-1, 1, 1), torch.zeros((), dtype=new.dtype, device=new.device), new)
        if bool(finite.any()):
            g = grad.detach().float()[finite].flatten(1).norm(dim=1)
            self._gnorms.append(float(g.mean()))
        return new

    def _input_grad(self, engine, batch, delta, objective):
        """Gradient of objective(output) w.r.t. delta, through engine.module (no parameter grads).

        The forward runs with the parameters' requires_grad off, so the graph has no weight
        edges and the backward computes input gradients only: ZeRO-3 replaces F.linear by a
        custom autograd function that otherwise computes (and drops) every weight gradient,
        which made an ascent pass cost a full training pass."""
        d = delta.detach().requires_grad_(True)
        with self.injector.active(d), _frozen(engine.module):
            out = engine.module(**batch)
            value = objective(out)
        (g,) = torch.autograd.grad(value, d)
        return g, value.detach()

    def _double(self, batch):
        """The batch twice along dim 0 (first half clean, second half perturbed), without targets."""
        return {k: (torch.cat([v, v], 0) if isinstance(v, torch.Tensor) else v)
                for k, v in self.model.inputs(batch).items()}

    def _train_regularized(self, engine, clean, weight: float, reg, perturbation):
        """Backward of clean + weight * reg (SMART's and R3F's objective); the step's statistics."""
        loss = clean + weight * reg
        engine.backward(loss)
        return self._stats(loss, clean, reg, perturbation)

    def _stats(self, loss, clean, adv, delta, **extra):
        stats = {"loss": _f(loss), "adv_active": 1.0, "nonfinite_resets": float(self._resets)}
        if clean is not None:
            stats["clean_loss"] = _f(clean)
        if adv is not None:
            stats["adv_loss"] = _f(adv)
        if delta is not None:
            # in the method's norm; the noise methods (no `norm` setting) report the L2 norm
            stats["delta_norm"] = float(per_example_norm(delta, getattr(self.cfg, "norm", "l2")).mean())
        if self._gnorms:
            stats["delta_grad_norm"] = sum(self._gnorms) / len(self._gnorms)
        stats.update({k: float(v) for k, v in extra.items()})
        return stats

    # -- the micro-step ----------------------------------------------------------------------------
    def step(self, engine, batch: dict) -> dict[str, float]:
        if engine.global_steps < self.cfg.start_step:  # warm-up: plain training
            out = engine(**batch)
            engine.backward(out.loss)
            loss = _f(out.loss)
            return {"loss": loss, "clean_loss": loss, "adv_loss": 0.0, "delta_norm": 0.0,
                    "nonfinite_resets": 0.0, "adv_active": 0.0}
        self._resets = 0
        self._gnorms = []
        return self._adv_step(engine, batch)

    def _adv_step(self, engine, batch):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class PGDConfig(MethodConfig):
    method: str = "pgd"
    steps: int = setting(2, "count")  # K ascent steps
    alpha: float = setting(0.1, "positive")  # ascent step size
    epsilon: float = setting(0.3, "nonnegative")  # projection radius; 0 = none
    sigma: float = setting(0.1, "nonnegative")  # random start's magnitude (FreeLB's init); 0 = zero start
    norm: str = setting("l2", "choice", *NORMS)
    start_step: int = setting(0, "step")  # plain training before this optimizer step
    backend: str = setting("auto", "choice", *BACKENDS)  # perturbation kernels
    coalesce: bool = setting(True, "flag")  # one gradient reduction for the micro-step's backwards

    LEGACY = {"step_size": "alpha", "max_norm": "epsilon", "init_mag": "sigma"}


class PGD(EmbeddingPerturbation):
    """K-step projected gradient ascent on the embedding perturbation (Madry et al. 2018), trained
    on clean + adversarial loss as in the common PGD snippet.

    The clean pass goes first, through the engine (its parameter gradients are the clean loss's).
    With a zero start (sigma = 0, the snippet's) its backward also yields the first ascent
    gradient, so K steps cost K + 1 training-pass equivalents: clean, K - 1 ascents (delta
    gradients only, about 2/3 of a pass), adversarial. A random start in the ball (sigma > 0,
    Madry et al.'s) needs the gradient at the start point: K ascents."""

    method = "pgd"
    Config = PGDConfig
    backwards = 2

    @classmethod
    def passes(cls, cfg):
        return cfg.steps + 1 + (cfg.sigma > 0)  # clean, K ascents (K - 1 from a zero start), adversarial

    def _ascent_steps(self) -> int:
        return self.cfg.steps

    def _random_start(self) -> bool:
        return self.cfg.sigma > 0

    def _adv_step(self, engine, batch):
        delta = self._init(batch) if self._random_start() else None
        zero = self._zeros(batch).requires_grad_(True)
        with self._reduction_scope(engine):
            with self.injector.active(zero):  # adding zeros leaves the forward bit-identical
                clean = engine(**batch).loss
            engine.backward(clean)
            steps = self._ascent_steps()
            if delta is None:
                delta = self._ascend(torch.zeros_like(zero), zero.grad / grad_scale(engine), batch)
                steps -= 1
            for _ in range(steps):
                g, _ = self._input_grad(engine, batch, delta, lambda out: out.loss)
                delta = self._ascend(delta, g, batch)
            with self.injector.active(delta):
                adv = engine(**batch).loss
            engine.backward(adv)
        return self._stats(clean + adv, clean, adv, delta)


@dataclass
class FGMConfig(MethodConfig):
    method: str = "fgm"
    epsilon: float = setting(0.1, "positive")  # the perturbation's norm
    norm: str = setting("l2", "choice", *NORMS)
    start_step: int = setting(0, "step")  # plain training before this optimizer step
    backend: str = setting("auto", "choice", *BACKENDS)  # perturbation kernels
    coalesce: bool = setting(True, "flag")  # one gradient reduction for the micro-step's two backwards

    LEGACY = {"step_size": "epsilon"}

    @classmethod
    def legacy_problems(cls, flat):
        if 0 < flat["max_norm"] < flat["step_size"]:  # the old FGM step was clipped to max_norm
            return [("max_norm", f"the old form clipped FGM's step (step_size {flat['step_size']:g}) to "
                                 f"max_norm {flat['max_norm']:g}; FGM's config has no clip: write "
                                 f"epsilon: {flat['max_norm']:g} (the same perturbation for norm l2)")]
        return []


class FGM(PGD):
    """Fast gradient method (Goodfellow et al. 2015; on embeddings, Miyato et al. 2017):
    r = epsilon * g / ||g|| with g the clean-loss gradient, trained on clean + adversarial loss:
    PGD with one step from a zero start and no projection, ~2 passes."""

    method = "fgm"
    Config = FGMConfig

    @classmethod
    def passes(cls, cfg):
        return 2  # clean (its backward gives the step's gradient), adversarial

    def _ascent_steps(self) -> int:
        return 1

    def _random_start(self) -> bool:
        return False

    def _ascent(self) -> tuple[float, float]:
        return self.cfg.epsilon, 0.0  # r = epsilon g / ||g||: no projection


class _RngReplay:
    """The random-number state at creation, restorable later: passes that start from the same
    state draw the same dropout masks (CPU generator, plus the device's when the model is on one)."""

    def __init__(self, device: torch.device):
        self.cpu = torch.get_rng_state()
        self.device = device
        self.module = getattr(torch, device.type, None) if device.type != "cpu" else None
        self.state = self.module.get_rng_state(device) if self.module is not None else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.module is not None:
            self.module.set_rng_state(self.state, self.device)


@dataclass
class FreeLBConfig(MethodConfig):
    method: str = "freelb"
    steps: int = setting(2, "count")  # K
    alpha: float = setting(0.1, "positive")  # ascent step size
    sigma: float = setting(0.1, "nonnegative")  # initial perturbation's magnitude; 0 = zero start
    epsilon: float = setting(0.3, "nonnegative")  # projection radius; 0 = none
    norm: str = setting("l2", "choice", *NORMS)
    reuse_dropout_masks: bool = setting(True, "flag")  # the same dropout masks in all K passes (reference code)
    start_step: int = setting(0, "step")  # plain training before this optimizer step
    backend: str = setting("auto", "choice", *BACKENDS)  # perturbation kernels
    coalesce: bool = setting(True, "flag")  # one gradient reduction for the micro-step's K backwards

    LEGACY = {"step_size": "alpha", "init_mag": "sigma", "max_norm": "epsilon"}


class FreeLB(EmbeddingPerturbation):
    """FreeLB-K (Zhu et al. 2020, Algorithm 1): parameter gradients accumulate over K passes
    (engine.backward(loss_t / K)); between passes delta ascends on the same backward's delta
    gradient with a per-example normalized step and is projected to the eps-ball.

    reuse_dropout_masks (default, as the reference code's dp_masks): every pass draws the same
    dropout masks, so the K passes differ only by delta (paper, section 'When adversarial training
    meets dropout'). Done by restoring the random-number state of the first pass before each later
    pass, which covers every dropout of the model (hidden, attention, heads) without touching it."""

    method = "freelb"
    Config = FreeLBConfig

    @classmethod
    def passes(cls, cfg):
        return cfg.steps  # K training passes, each also giving the next ascent's gradient

    @property
    def backwards(self):
        return self.cfg.steps

    def _adv_step(self, engine, batch):
        K = self.cfg.steps
        delta = self._init(batch)
        replay = _RngReplay(delta.device) if self.cfg.reuse_dropout_masks else None
        losses = []
        with self._reduction_scope(engine):
            for t in range(K):
                if replay is not None and t > 0:
                    replay.restore()
                d = delta.detach().requires_grad_(True)
                with self.injector.active(d):
                    loss = engine(**batch).loss
                engine.backward(loss / K)
                losses.append(loss.detach())
                used = d
                if t < K - 1:  # the last pass's delta gradient is never used (as in the paper)
                    g = d.grad * (K / grad_scale(engine))
                    delta = self._ascend(delta, g, batch)
        mean = torch.stack(losses).mean()
        return self._stats(mean, losses[0], losses[-1], used)


@dataclass
class SMARTConfig(MethodConfig):
    method: str = "smart"
    steps: int = setting(2, "count")  # T_x ascent steps
    eta: float = setting(0.1, "positive")  # ascent step size
    sigma: float = setting(0.1, "positive")  # standard deviation of the initial noise
    epsilon: float = setting(0.3, "nonnegative")  # per-token projection radius; 0 = none
    norm: str = setting("l2", "choice", *NORMS)
    lambda_s: float = setting(1.0, "positive")  # weight of the smoothness regularizer
    ascent_divergence: str = setting("symmetric", "choice", *DIVERGENCES)
    start_step: int = setting(0, "step")  # plain training before this optimizer step
    backend: str = setting("auto", "choice", *BACKENDS)  # perturbation kernels

    LEGACY = {"step_size": "eta", "init_mag": "sigma", "max_norm": "epsilon", "weight": "lambda_s"}


class SMART(EmbeddingPerturbation):
    """SMART smoothness-inducing regularizer (Jiang et al. 2020): loss + lambda * symmetric-KL(
    f(x + delta), f(x)), delta from N(0, sigma^2) noise ascended `steps` times (T_x) with per-token
    normalized steps of size eta (norm: l2 or linf) and projected per token to epsilon (the paper's ball;
    0 disables it). The ascent maximizes `ascent_divergence` against the clean prediction:
    the symmetric KL (the paper's objective, default), its one-sided VAT form, or mt-dnn's
    stable_kl. One clean forward gives the task loss, the ascent target and the clean side of
    the final KL (as mt-dnn does), so with dropout they all see the same masks. The Bregman
    proximal-point (momentum teacher) term is not included."""

    method = "smart"
    Config = SMARTConfig

    @classmethod
    def passes(cls, cfg):
        return cfg.steps + 2  # clean, T_x ascents, perturbed (one backward through clean and perturbed)

    def _ascent(self) -> tuple[float, float]:
        return self.cfg.eta, self.cfg.epsilon

    def _adv_step(self, engine, batch):
        inputs = self.model.inputs(batch)
        out = engine(**batch)  # the clean forward: task loss, ascent target, clean side of the KL
        clean, clean_logits = out.loss, out.logits
        target = clean_logits.detach()
        delta = self._noise(batch, self.cfg.sigma, "normal")
        kind = self.cfg.ascent_divergence

        def ascent_objective(o):  # the target is constant: its side of the KL carries no gradient
            return self.model.divergence(kind, batch, o.logits, target)

        for _ in range(self.cfg.steps):
            g, _ = self._input_grad(engine, inputs, delta, ascent_objective)
            delta = self._ascend(delta, g, batch, granularity="token")
        with self.injector.active(delta.detach()):
            adv_logits = engine(**inputs).logits
        reg = self.model.symmetric_kl(batch, adv_logits, clean_logits, detach_targets=True)
        return self._train_regularized(engine, clean, self.cfg.lambda_s, reg, delta)


@dataclass
class R3FConfig(MethodConfig):
    method: str = "r3f"
    eps: float = setting(0.1, "positive")  # noise scale: U(-eps, eps) or N(0, eps^2)
    noise_type: str = setting("uniform", "choice", *NOISES)
    r3f_lambda: float = setting(1.0, "positive")  # weight of the symmetric KL
    start_step: int = setting(0, "step")  # plain training before this optimizer step

    LEGACY = {"init_mag": "eps", "noise": "noise_type", "weight": "r3f_lambda"}


class R3F(EmbeddingPerturbation):
    """R3F (Aghajanyan et al. 2021): loss + lambda * symmetric-KL(f(x + z), f(x)) with z ~ U(-eps,
    eps) or N(0, eps^2), no ascent; gradients flow through both predictions,
    except that the noisy branch starts from a detached copy of the word embeddings (as fairseq's
    sentence_prediction_r3f does): the embedding table learns from the clean branch only.
    Clean and noisy inputs run as one doubled batch: one forward, one backward."""

    method = "r3f"
    Config = R3FConfig

    @classmethod
    def passes(cls, cfg):
        return 2  # one forward and backward of the doubled (clean + noisy) batch

    def _adv_step(self, engine, batch):
        z = self._noise(batch, self.cfg.eps, self.cfg.noise_type)
        with self.injector.active(torch.cat([torch.zeros_like(z), z], 0), detach_from=z.size(0)):
            logits = engine(**self._double(batch)).logits
        clean_logits, noisy_logits = logits.chunk(2, 0)
        clean = self.model.loss(batch, clean_logits)
        reg = self.model.symmetric_kl(batch, noisy_logits, clean_logits)
        return self._train_regularized(engine, clean, self.cfg.r3f_lambda, reg, z)


@dataclass
class RSRPConfig(MethodConfig):
    method: str = "rs-rp"
    sigma: float = setting(0.1, "positive")  # noise scale: U(-sigma, sigma) or N(0, sigma^2)
    noise_type: str = setting("uniform", "choice", *NOISES)
    start_step: int = setting(0, "step")  # plain training before this optimizer step

    LEGACY = {"init_mag": "sigma", "noise": "noise_type"}


class RSRP(EmbeddingPerturbation):
    """Randomized smoothing by random perturbation: train on f(x + z), z ~ U(-s, s) or N(0, s^2)
    per embedding coordinate (s = sigma); one pass, no clean loss."""

    method = "rs-rp"
    Config = RSRPConfig

    def _adv_step(self, engine, batch):
        z = self._noise(batch, self.cfg.sigma, self.cfg.noise_type)
        with self.injector.active(z):
            loss = engine(**batch).loss
        engine.backward(loss)
        return self._stats(loss, None, loss, z)


@dataclass
class RSDAConfig(MethodConfig):
    method: str = "rs-da"
    neighbours: Optional[str] = setting(None, "required", "a synonym neighbours file (TSV: word<TAB>neighbour ...)")
    copies: int = setting(1, "count")  # augmented copies per example


class RSDA(Strategy):
    """Randomized smoothing by data augmentation: the English training set is augmented (its
    data transform, train_examples); the micro-step is plain training."""

    method = "rs-da"
    Config = RSDAConfig

    @classmethod
    def train_examples(cls, cfg, examples, spec, seed: int):
        from .augment import augment_examples

        return augment_examples(examples, spec, cfg.neighbours, cfg.copies, seed)

    @classmethod
    def train_examples_factor(cls, cfg) -> int:
        return 1 + cfg.copies  # each example and its copies


_CLASSES = {cls.method: cls for cls in (Strategy, FGM, PGD, FreeLB, SMART, R3F, RSRP, RSDA)}
METHODS = tuple(_CLASSES)  # every list of method names derives from this one
LEGACY_KEYS = ("step_size", "init_mag", "max_norm", "weight")  # names only the old flat form has


def strategy_class(method: str) -> type[Strategy]:
    """The Strategy of a built-in method name, or of `package.module:ClassName` (a Strategy
    subclass of one's own, imported here)."""
    if method in _CLASSES:
        return _CLASSES[method]
    if not isinstance(method, str) or ":" not in method:
        raise ConfigError(f"{method!r} is not one of: {', '.join(METHODS)}; a method of your own is written "
                          "package.module:ClassName (docs/EXTENDING.md)")
    module, _, name = method.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigError(f"{method!r}: cannot import module {module!r} ({exc}); is it on PYTHONPATH on every "
                          "rank?") from None
    except AttributeError:
        raise ConfigError(f"{method!r}: module {module!r} has no {name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"{method!r} is not a subclass of xrobust.adversarial.Strategy")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, MethodConfig)):
        raise ConfigError(f"{method!r}: its Config must be a dataclass subclass of "
                          "xrobust.adversarial.MethodConfig")
    return cls


def validate_adversarial(cfg, where: str = "adversarial") -> None:
    """Raise ConfigError for the first setting the method cannot use (cfg: a MethodConfig)."""
    cls = strategy_class(cfg.method)
    if type(cfg) is not cls.Config:
        raise ConfigError(f"key '{where}': {cfg.method} takes a {cls.Config.__name__}, got a {type(cfg).__name__}")
    for key, message in cfg.problems():
        raise ConfigError(f"key '{where}.{key}': {message}")


def build_strategy(cfg, model) -> Strategy:
    """The strategy of `cfg.method` (cfg: its MethodConfig, e.g. a phase's `adversarial`)."""
    validate_adversarial(cfg)
    cls = strategy_class(cfg.method)
    if cls is not Strategy and not hasattr(model, "word_embeddings"):
        raise ConfigError(f"adversarial.method {cfg.method!r} needs a model with word_embeddings()")
    return cls(cfg, model)
