"""Training strategies: one micro-step of plain, adversarial or noise-robust training.

`build_strategy(adv_cfg, model)` returns a Strategy; `strategy.step(engine, batch)` runs the
forward(s) and engine.backward(s) of one micro-batch and returns float statistics; the training
loop then calls engine.step(). See docs/ADVERSARIAL.md for each method and its paper.

DeepSpeed rules followed here (REFERENCE section 6):
- Ascent passes (gradient w.r.t. delta only) run through `engine.module(...)` with
  torch.autograd.grad(loss, delta): no parameter gradients, no GAS/loss scaling, and the engine
  does not count them as a backward.
- Losses that train the parameters go through `engine(...)` + `engine.backward(...)`. A delta
  gradient read off such a backward (FGM, FreeLB) is scaled by 1/GAS and the fp16 loss scale;
  `grad_scale(engine)` undoes it so that every reported/used delta gradient is in loss units.
- Several engine.backward calls in one micro-step are merged into one gradient reduction with
  engine.coalesce_grad_reduction() where DeepSpeed supports it (see injection.can_coalesce).

The idle-head contract: every objective a strategy trains is computed from the logits (or the
loss) of training-mode forwards of the model. XRobustModel adds to those logits a zero that
depends on every head it did not use (XRobustModel._idle_heads_term), so whatever the number of
forwards, doubled batches or KL terms, every idle head gets a real zero gradient each
micro-step and ZeRO-3 does not step it with a stale one (tests/scripts/adv_zero3_equivalence.py
checks this for every method).
"""

from __future__ import annotations

import contextlib
import math

import torch

from ..errors import ConfigError
from ..kernels import perturbation_init, perturbation_step_with_status
from ..kernels.api import BACKENDS, NORMS
from .divergence import KINDS as DIVERGENCES
from .injection import DeltaInjector, can_coalesce, delta_shape, embedding_mask, grad_scale, per_example_norm

NOISES = ("uniform", "normal")  # random perturbations: U(-m, m) or N(0, m^2) per coordinate


def _f(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


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


class Strategy:
    """Plain training: exactly `out = engine(**batch); engine.backward(out.loss)`."""

    method = "none"
    adversarial = False

    def __init__(self, cfg, model):
        self.cfg = cfg
        self.model = model

    def step(self, engine, batch: dict) -> dict[str, float]:
        out = engine(**batch)
        engine.backward(out.loss)
        return {"loss": _f(out.loss)}

    def close(self) -> None:
        pass


class _Perturbed(Strategy):
    """Shared machinery of the embedding-perturbation methods."""

    adversarial = True
    backwards = 1  # engine.backward calls per micro-step (coalesced when > 1)

    def __init__(self, cfg, model):
        super().__init__(cfg, model)
        self.injector = DeltaInjector(model.word_embeddings())
        self.hidden = int(model.encoder.config.hidden_size)
        self.generator: torch.Generator | None = None  # None: the global torch RNG
        self.coalesce = cfg.coalesce  # merge the reductions of several backwards (adversarial.coalesce)
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

    def _init(self, batch):
        """FreeLB-style random start (zeros when init_mag is 0)."""
        if self.cfg.init_mag == 0:
            return self._zeros(batch)
        zeros = self._zeros(batch)
        delta = perturbation_init(zeros, embedding_mask(batch), init_mag=self.cfg.init_mag, norm=self.cfg.norm,
                                  generator=self.generator, backend=self.cfg.backend)
        return self._project(delta)

    def _project(self, delta):
        """Into the max_norm ball (per example; per token for SMART's token granularity is not
        needed: its init is far inside). A no-op whenever init_mag <= max_norm, as in the papers."""
        r = self.cfg.max_norm
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
        new, finite = perturbation_step_with_status(
            delta.detach(), grad.detach(), embedding_mask(batch), step_size=self.cfg.step_size,
            max_norm=self.cfg.max_norm, norm=self.cfg.norm, granularity=granularity, backend=self.cfg.backend)
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

    def _stats(self, loss, clean, adv, delta, **extra):
        stats = {"loss": _f(loss), "adv_active": 1.0, "nonfinite_resets": float(self._resets)}
        if clean is not None:
            stats["clean_loss"] = _f(clean)
        if adv is not None:
            stats["adv_loss"] = _f(adv)
        if delta is not None:
            stats["delta_norm"] = float(per_example_norm(delta, self.cfg.norm).mean())
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


class PGD(_Perturbed):
    """K-step projected gradient ascent on the embedding perturbation (Madry et al. 2018), trained
    on clean + adversarial loss as in the common PGD snippet.

    The clean pass goes first, through the engine (its parameter gradients are the clean loss's).
    With a zero start (init_mag = 0, the snippet's) its backward also yields the first ascent
    gradient, so K steps cost K + 1 training-pass equivalents: clean, K - 1 ascents (delta
    gradients only, about 2/3 of a pass), adversarial. A random start in the ball (init_mag > 0,
    Madry et al.'s) needs the gradient at the start point: K ascents."""

    method = "pgd"
    backwards = 2

    def _ascent_steps(self) -> int:
        return self.cfg.steps

    def _random_start(self) -> bool:
        return self.cfg.init_mag > 0

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


class FGM(PGD):
    """Fast gradient method (Goodfellow et al. 2015; on embeddings, Miyato et al. 2017):
    r = eps * g / ||g|| with g the clean-loss gradient (eps = step_size), trained on clean +
    adversarial loss: PGD with one step from a zero start, ~2 passes."""

    method = "fgm"

    def _ascent_steps(self) -> int:
        return 1

    def _random_start(self) -> bool:
        return False


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


class FreeLB(_Perturbed):
    """FreeLB-K (Zhu et al. 2020, Algorithm 1): parameter gradients accumulate over K passes
    (engine.backward(loss_t / K)); between passes delta ascends on the same backward's delta
    gradient with a per-example normalized step and is projected to the eps-ball.

    reuse_dropout_masks (default, as the reference code's dp_masks): every pass draws the same
    dropout masks, so the K passes differ only by delta (paper, section 'When adversarial training
    meets dropout'). Done by restoring the random-number state of the first pass before each later
    pass, which covers every dropout of the model (hidden, attention, heads) without touching it."""

    method = "freelb"

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


class SMART(_Perturbed):
    """SMART smoothness-inducing regularizer (Jiang et al. 2020): loss + lambda * symmetric-KL(
    f(x + delta), f(x)), delta from N(0, init_mag^2) noise ascended `steps` times with per-token
    normalized steps (norm: l2 or linf) and projected per token to max_norm (the paper's eps-ball;
    0 disables it). The ascent maximizes `ascent_divergence` against the clean prediction:
    the symmetric KL (the paper's objective, default), its one-sided VAT form, or mt-dnn's
    stable_kl. One clean forward gives the task loss, the ascent target and the clean side of
    the final KL (as mt-dnn does), so with dropout they all see the same masks. The Bregman
    proximal-point (momentum teacher) term is not included."""

    method = "smart"

    def _adv_step(self, engine, batch):
        inputs = self.model.inputs(batch)
        out = engine(**batch)  # the clean forward: task loss, ascent target, clean side of the KL
        clean, clean_logits = out.loss, out.logits
        target = clean_logits.detach()
        delta = self._noise(batch, self.cfg.init_mag, "normal")
        kind = self.cfg.ascent_divergence

        def ascent_objective(o):  # the target is constant: its side of the KL carries no gradient
            return self.model.divergence(kind, batch, o.logits, target)

        for _ in range(self.cfg.steps):
            g, _ = self._input_grad(engine, inputs, delta, ascent_objective)
            delta = self._ascend(delta, g, batch, granularity="token")
        with self.injector.active(delta.detach()):
            adv_logits = engine(**inputs).logits
        reg = self.model.symmetric_kl(batch, adv_logits, clean_logits, detach_targets=True)
        loss = clean + self.cfg.weight * reg
        engine.backward(loss)
        return self._stats(loss, clean, reg, delta)


class R3F(_Perturbed):
    """R3F (Aghajanyan et al. 2021): loss + lambda * symmetric-KL(f(x + z), f(x)) with z ~ U(-eps,
    eps) or N(0, eps^2) (eps = init_mag), no ascent; gradients flow through both predictions,
    except that the noisy branch starts from a detached copy of the word embeddings (as fairseq's
    sentence_prediction_r3f does): the embedding table learns from the clean branch only.
    Clean and noisy inputs run as one doubled batch: one forward, one backward."""

    method = "r3f"

    def _adv_step(self, engine, batch):
        z = self._noise(batch, self.cfg.init_mag, self.cfg.noise)
        with self.injector.active(torch.cat([torch.zeros_like(z), z], 0), detach_from=z.size(0)):
            logits = engine(**self._double(batch)).logits
        clean_logits, noisy_logits = logits.chunk(2, 0)
        clean = self.model.loss(batch, clean_logits)
        reg = self.model.symmetric_kl(batch, noisy_logits, clean_logits)
        loss = clean + self.cfg.weight * reg
        engine.backward(loss)
        return self._stats(loss, clean, reg, z)


class RSRP(_Perturbed):
    """Randomized smoothing by random perturbation: train on f(x + z), z ~ U(-s, s) or N(0, s^2)
    per embedding coordinate (s = init_mag); one pass, no clean loss."""

    method = "rs-rp"

    def _adv_step(self, engine, batch):
        z = self._noise(batch, self.cfg.init_mag, self.cfg.noise)
        with self.injector.active(z):
            loss = engine(**batch).loss
        engine.backward(loss)
        return self._stats(loss, None, loss, z)


class RSDA(Strategy):
    """Randomized smoothing by data augmentation: the augmentation happens on the dataset
    (xrobust.adversarial.augment_examples); the micro-step is plain training."""

    method = "rs-da"


_CLASSES = {cls.method: cls for cls in (Strategy, FGM, PGD, FreeLB, SMART, R3F, RSRP, RSDA)}
METHODS = tuple(_CLASSES)  # every list of method names derives from this one


def validate_adversarial(cfg, where: str = "adversarial") -> None:
    """Raise ConfigError for settings the chosen method cannot use."""

    def fail(key, msg):
        raise ConfigError(f"key '{where}.{key}': {msg}")

    if cfg.method not in METHODS:
        fail("method", f"{cfg.method!r} is not one of: {', '.join(METHODS)}")
    for key, choices in (("norm", NORMS), ("noise", NOISES), ("backend", BACKENDS)):
        if getattr(cfg, key) not in choices:
            fail(key, f"{getattr(cfg, key)!r} is not one of: {', '.join(choices)}")
    if cfg.ascent_divergence not in DIVERGENCES:
        fail("ascent_divergence", f"{cfg.ascent_divergence!r} is not one of: {', '.join(DIVERGENCES)}")
    if not isinstance(cfg.reuse_dropout_masks, bool):
        fail("reuse_dropout_masks", f"expected true or false, got {cfg.reuse_dropout_masks!r}")
    for key in ("step_size", "init_mag", "max_norm", "weight"):
        v = getattr(cfg, key)
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            fail(key, f"expected a finite value >= 0, got {v!r}")
    if not isinstance(cfg.start_step, int) or cfg.start_step < 0:
        fail("start_step", f"expected an optimizer step >= 0, got {cfg.start_step!r}")
    m = cfg.method
    if m in ("pgd", "freelb", "smart") and (not isinstance(cfg.steps, int) or cfg.steps < 1):
        fail("steps", f"{m} needs at least 1 step, got {cfg.steps!r}")
    if m in ("fgm", "pgd", "freelb", "smart") and cfg.step_size <= 0:
        fail("step_size", f"{m} needs step_size > 0 (the ascent step{'; FGM: epsilon' if m == 'fgm' else ''})")
    if m in ("r3f", "rs-rp", "smart") and cfg.init_mag <= 0:
        fail("init_mag", f"{m} needs init_mag > 0 (the noise scale)")
    if m in ("smart", "r3f") and cfg.weight <= 0:
        fail("weight", f"{m} needs weight (lambda) > 0")
    if m == "rs-da":
        if not cfg.neighbours:
            fail("neighbours", "rs-da needs a synonym neighbours file (TSV: word<TAB>neighbour ...)")
        if not isinstance(cfg.copies, int) or cfg.copies < 1:
            fail("copies", f"expected at least 1 augmented copy, got {cfg.copies!r}")


def build_strategy(adv_cfg, model) -> Strategy:
    """The strategy for `adv_cfg.method` (an xrobust.config.schema.AdversarialConfig)."""
    validate_adversarial(adv_cfg)
    if adv_cfg.method != "none" and not hasattr(model, "word_embeddings"):
        raise ConfigError(f"adversarial.method {adv_cfg.method!r} needs a model with word_embeddings()")
    return _CLASSES[adv_cfg.method](adv_cfg, model)
