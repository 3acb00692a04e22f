"""Robustness of a finished run: the task metric under random embedding noise and under
embedding-space PGD, as a function of the perturbation size eps, per language (docs/ROBUSTNESS.md).

Perturbations are added to the word-embedding output through the same forward hook training
uses (xrobust.modeling.model.DeltaInjector); PGD ascends the loss of the gold labels with
xrobust.kernels.perturbation_step. The perturbed forward is predict.forward_outputs itself, given
a perturbation hook (same batches, rank sharding and gather), so eps=0 reproduces the clean
evaluation exactly; scoring goes through predict.score. The run's models and data come from
finished_run.FinishedRun, as for `xrobust eval`.

Writes robustness.json, robustness.md and robustness_<task>.png (one curve per language).
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..modeling.model import DeltaInjector, delta_shape, embedding_mask
from ..errors import ConfigError, DataError
from ..adversarial.strategies import NOISES
from ..kernels import perturbation_init, perturbation_step_with_status
from ..kernels.api import NORMS
from .. import distributed as dist
from ..tasks import get_task
from .finished_run import FinishedRun
from .predict import predict, score
from .scorer import official_name

ATTACKS = ("noise", "pgd")
DEFAULT_EPS = (0.0, 0.01, 0.05, 0.1, 0.3, 1.0)
ROBUSTNESS = "robustness"  # OUT/robustness.json, robustness.md, robustness_<task>.png
ROBUSTNESS_FILE = f"{ROBUSTNESS}.json"


@dataclass(frozen=True)
class Attack:
    """One perturbation family. `eps` is given per call; everything else is fixed for a run.

    noise: uniform = FreeLB's initialisation (perturbation_init: U(-1,1) * eps / sqrt(n_tokens * d)
    for L2, U(-eps, eps) for Linf); normal = N(0, s^2) with s = eps / sqrt(n_tokens * d) (L2:
    E||delta||^2 = eps^2) or s = eps clipped to [-eps, eps] (Linf).
    pgd: `steps` normalized ascent steps of size step_size (default 2.5 * eps / steps) on the
    loss of the gold labels from delta = 0, each projected to the eps ball.
    """

    kind: str = "noise"
    norm: str = "l2"
    noise: str = "uniform"
    steps: int = 3
    step_size: float | None = None
    seed: int = 0
    backend: str = "auto"

    def __post_init__(self):
        for key, value, choices in (("attack", self.kind, ATTACKS), ("norm", self.norm, NORMS),
                                    ("noise", self.noise, NOISES)):
            if value not in choices:
                raise ConfigError(f"--{key}: {value!r}; expected one of {', '.join(choices)}")
        if self.kind == "pgd" and (not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"--pgd-steps: {self.steps!r}; expected an int >= 1")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ConfigError(f"--pgd-step-size: {self.step_size!r}; expected a positive number")

    def alpha(self, eps: float) -> float:
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps


def check_eps(values) -> list[float]:
    out = []
    for v in values:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"--eps: {v!r}; expected finite numbers >= 0")
        out.append(float(v))
    if not out:
        raise ConfigError("--eps: no values; expected e.g. --eps 0 0.01 0.1")
    return sorted(dict.fromkeys(out))


# -- perturbations ----------------------------------------------------------------------------------

def noise_delta(shape, mask: torch.Tensor, eps: float, attack: Attack, generator: torch.Generator) -> torch.Tensor:
    """Random delta (fp32, padding exactly 0) of size eps under attack.norm."""
    like = torch.empty(shape, dtype=torch.float32, device=mask.device)
    if attack.noise == "uniform":
        return perturbation_init(like, mask, init_mag=eps, norm=attack.norm, generator=generator,
                                 backend=attack.backend)
    real = (mask != 0).unsqueeze(-1)
    z = torch.randn(shape, generator=generator, dtype=torch.float32, device=mask.device)
    if attack.norm == "l2":
        tokens = real.sum(dim=(1, 2), keepdim=True).clamp(min=1).float()
        z = z * (eps / torch.sqrt(tokens * shape[-1]))
    else:
        z = (z * eps).clamp(-eps, eps)
    return torch.where(real, z, torch.zeros((), dtype=torch.float32, device=z.device))


@contextmanager
def _frozen(model):
    """Parameters out of autograd during the attack: only d loss / d delta is needed."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def pgd_delta(model, batch: dict, injector: DeltaInjector, eps: float, attack: Attack) -> torch.Tensor:
    """K ascent steps on the gold-label loss, projected to ||delta|| <= eps per example."""
    mask = embedding_mask(batch)
    delta = torch.zeros(delta_shape(batch, model.encoder.config.hidden_size), dtype=torch.float32,
                        device=mask.device)
    if eps == 0:  # the kernels read max_norm=0 as "no projection": eps=0 is the clean input
        return delta
    with _frozen(model), torch.enable_grad():
        for _ in range(attack.steps):
            delta.requires_grad_(True)
            with injector.active(delta):
                loss = model(**batch).loss
            if loss is None:
                raise DataError(f"head {batch.get('head')!r}: no loss from the gold labels; PGD needs labeled data")
            (grad,) = torch.autograd.grad(loss, delta)
            delta, finite = perturbation_step_with_status(
                delta.detach(), grad, mask, step_size=attack.alpha(eps), max_norm=eps, norm=attack.norm,
                backend=attack.backend)
            # unlabeled rows (all targets ignored) give a NaN loss: leave those examples clean
            delta[~finite] = 0.0
    return delta.detach()


def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def perturbation(attack: Attack | None, eps: float, seed_key: str = ""):
    """predict.forward_outputs' perturbation hook for `attack` at size eps (None: no perturbation).
    Noise is seeded per global batch index, so results do not depend on the number of ranks."""
    if attack is None:
        return None

    def delta(model, batch, index, injector):
        if attack.kind == "pgd":
            return pgd_delta(model, batch, injector, eps, attack)
        mask = embedding_mask(batch)
        gen = torch.Generator(device=mask.device).manual_seed(_seed(attack.seed, seed_key, eps, index))
        return noise_delta(delta_shape(batch, model.encoder.config.hidden_size), mask, eps, attack, gen)
    return delta


def headline_metric(spec) -> str:
    """The number plotted: accuracy (classification, multiple choice), else F1 (tagging, QA)."""
    return spec.task_format.headline_metric


def attack_metric(model, spec, examples, features, tokenizer, batch_size: int, attack: Attack | None,
                  eps: float, lang: str, *, seed_key: str = "") -> dict[str, float]:
    preds = predict(model, spec, examples, features, tokenizer, batch_size,
                    perturbation=perturbation(attack, eps, seed_key))
    return score(spec, examples, preds, lang)


def with_qa_targets(cfg, spec, examples, features, tokenizer, phase, where: str = ""):
    """Span-QA examples that have a gold span, their prediction features plus start/end positions of
    the gold answer (PGD's loss), and how many examples were dropped: (examples, features, skipped).

    Training featurization cuts the same windows (one tokenizer call, same stride) and none for an
    example whose answer is not at answer_start (not found near it while loading, see
    xrobust.data.loading.align_answers); such examples are dropped, as training skips them. The
    two feature lists then align one to one; that is checked rather than assumed.
    """
    from ..training.data import featurize_cached

    train = featurize_cached(cfg, spec, examples, tokenizer, phase, train=True)
    targeted = set(train["example_id"])
    skipped = sum(1 for i in examples["id"] if str(i) not in targeted)
    if skipped == len(examples):
        raise DataError(f"task {spec.name}{where}: none of the {len(examples)} examples has its answer at "
                        f"answer_start; PGD needs gold answer spans")
    if skipped:  # indices kept in memory: every rank filters alike, no cache file is written
        examples = examples.filter(lambda ids: [str(i) in targeted for i in ids], input_columns="id",
                                   batched=True, keep_in_memory=True)
        features = features.filter(lambda ids: [i in targeted for i in ids], input_columns="example_id",
                                   batched=True, keep_in_memory=True)
    if len(train) != len(features) or train["example_id"] != features["example_id"]:
        raise DataError(f"task {spec.name}{where}: training and prediction featurization cut different windows "
                        f"({len(train)} vs {len(features)} features); cannot attach gold spans for PGD")
    features = features.add_column("start_positions", train["start_positions"]).add_column(
        "end_positions", train["end_positions"])
    return examples, features, skipped


# -- a run --------------------------------------------------------------------------------------------

def evaluate_robustness(cfg, root: Path, *, tasks=None, languages=None, split=None, eps=DEFAULT_EPS,
                        attacks: list[Attack] | None = None, max_examples=None, out_dir: Path | None = None,
                        models=None) -> dict:
    """Curves for every (task, attack, language) of a finished run; written under out_dir
    (default RUN/robustness) on rank 0. Returns the robustness.json object."""
    from ..data.stats import data_report, log_report

    root = Path(root)
    ev = cfg.evaluation
    split = split or ev.split
    eps = check_eps(eps)
    attacks = attacks or [Attack("noise"), Attack("pgd")]
    kinds = [a.kind for a in attacks]
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"--attack: {' '.join(kinds)} names an attack twice")
    max_examples = max_examples if max_examples is not None else ev.max_examples
    run = FinishedRun(cfg, root, models=models)
    tasks = tasks or [t for t in run.evaluated_tasks() if get_task(t).task_format.has_head]
    for name in tasks:
        if not get_task(name).task_format.has_head:
            raise ConfigError(f"--tasks: {name} is a retrieval task; robustness curves need a task with a head")
    plan = run.plan(tasks, split, languages)
    if not plan:
        raise ConfigError(f"no (task, language) to evaluate on split {split!r} for tasks {', '.join(tasks)}")
    curves: dict = {}
    metric_names: dict = {}
    data: dict = {}
    bar = tqdm(total=len(plan) * len(attacks) * len(eps), desc="robustness", disable=not dist.is_main(),
               dynamic_ncols=True)
    for spec, lang in plan:
        model, tokenizer = run.load(spec.name)
        examples, features = run.evaluation_set(spec, split, lang, tokenizer, max_examples)
        report = data_report(spec, split, lang, examples, features, train=False)
        if spec.task_format.windowed and any(a.kind == "pgd" for a in attacks):
            # every curve of the task is measured on the examples PGD can attack, so they compare
            examples, features, report["skipped"] = with_qa_targets(cfg, spec, examples, features, tokenizer,
                                                                    run.phase(spec.name), f" {split} ({lang})")
        data.setdefault(official_name(spec.name), {})[lang] = log_report(spec.name, split, lang, report)
        key = headline_metric(spec)
        metric_names[official_name(spec.name)] = key
        for attack in attacks:
            points = []
            for e in eps:
                bar.set_postfix(task=spec.name, lang=lang, attack=attack.kind, eps=e)
                m = attack_metric(model, spec, examples, features, tokenizer, ev.batch_size, attack, e, lang,
                                  seed_key=f"{spec.name}/{lang}/{attack.kind}")
                points.append([e, float(m[key])])
                bar.update()
            curves.setdefault(official_name(spec.name), {}).setdefault(attack.kind, {})[lang] = points
    bar.close()
    result = {
        "tasks": curves,
        "metrics": metric_names,
        "settings": {"split": split, "eps": eps, "max_examples": max_examples, "batch_size": ev.batch_size,
                     "attacks": {a.kind: _attack_settings(a) for a in attacks}, "models": run.models.to_json(root),
                     "data": data},
    }
    if dist.is_main():
        write_robustness(result, Path(out_dir) if out_dir else root / "robustness",
                         title=f"Robustness: {cfg.name} ({split})")
    dist.barrier()
    return result


def _attack_settings(a: Attack) -> dict:
    d = asdict(a)
    d.pop("kind")
    if a.kind == "noise":
        for k in ("steps", "step_size"):
            d.pop(k)
    else:
        d.pop("noise")
        d.pop("seed")
        if d["step_size"] is None:
            d["step_size"] = "2.5 * eps / steps"
    return d


# -- outputs ------------------------------------------------------------------------------------------

def validate_robustness(result, where: str) -> None:
    if not isinstance(result, dict) or not isinstance(result.get("tasks"), dict):
        raise DataError(f"{where}: expected an object with \"tasks\": "
                        f"{{task: {{attack: {{lang: [[eps, value], ...]}}}}}}")
    for task, attacks in result["tasks"].items():
        for attack, langs in attacks.items():
            for lang, points in langs.items():
                ok = isinstance(points, list) and all(
                    isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(x, (int, float)) for x in p)
                    for p in points)
                if not ok:
                    raise DataError(f"{where}: tasks.{task}.{attack}.{lang} must be a list of [eps, value] pairs")


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def robustness_markdown(result: dict, title: str = "Robustness") -> str:
    lines = [f"# {title}", ""]
    settings = result.get("settings", {})
    for task, attacks in result["tasks"].items():
        metric = result.get("metrics", {}).get(task, "metric")
        lines += [f"## {task} ({metric})", ""]
        for attack, langs in attacks.items():
            eps = sorted({p[0] for pts in langs.values() for p in pts})
            lines += [f"### {attack}", "", "| lang | " + " | ".join(f"eps={e:g}" for e in eps) + " |",
                      "|---|" + "---:|" * len(eps)]
            table = {lang: dict((p[0], p[1]) for p in pts) for lang, pts in langs.items()}
            for lang, row in table.items():
                lines.append(f"| {lang} | " + " | ".join(_fmt(row.get(e)) for e in eps) + " |")
            avg = [np.mean([row[e] for row in table.values() if e in row]) for e in eps]
            lines.append("| **avg** | " + " | ".join(_fmt(float(v)) for v in avg) + " |")
            lines.append("")
        lines.append(f"![{task}](robustness_{task}.png)\n")
    if settings:
        import json

        lines += ["## Settings", ""] + [f"- {k}: `{json.dumps(v, ensure_ascii=False)}`" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def curves_png(task: str, attacks: dict, metric: str, path) -> None:
    """One panel per attack: metric vs eps, one line per language, the language mean dashed."""
    from matplotlib.figure import Figure

    from .plots import save_png

    n = max(1, len(attacks))
    fig = Figure(figsize=(5.2 * n, 4.0))
    for k, (attack, langs) in enumerate(attacks.items()):
        ax = fig.add_subplot(1, n, k + 1)
        eps = sorted({p[0] for pts in langs.values() for p in pts})
        # eps=0 cannot sit on a log axis: a symlog axis keeps it and spreads the small values
        positive = [e for e in eps if e > 0]
        for lang, pts in langs.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, linewidth=1, label=lang)
        mean = [np.mean([dict(map(tuple, pts)).get(e, np.nan) for pts in langs.values()]) for e in eps]
        ax.plot(eps, mean, color="black", linestyle="--", linewidth=1.6, label="mean")
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlabel("eps")
        ax.set_ylabel(metric)
        ax.set_title(f"{task}: {attack}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, ncol=2 if len(langs) > 8 else 1)
    fig.tight_layout()
    save_png(fig, path)


def write_robustness(result: dict, out_dir, title: str = "Robustness") -> list[Path]:
    from .plots import write_with_figures

    validate_robustness(result, str(Path(out_dir) / ROBUSTNESS_FILE))
    metrics = result.get("metrics", {})
    return write_with_figures(out_dir, ROBUSTNESS, result, robustness_markdown(result, title),
                              lambda task, attacks, png: curves_png(task, attacks, metrics.get(task, "metric"), png))
