"""A finished training run, opened for evaluation.

`FinishedRun` is what `xrobust eval` (run.py), the robustness curves (robustness.py) and the
cross-lingual matrix (crosslingual.py) share: the run directory and its config, the trained model
of every task (models.json), one model in memory at a time, and a task's examples and features per
split and language, featurized with the settings of the phase that trained the task.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import XRobustError, context
from ..tasks import get_task
from ..training.rundir import RunModels
from .. import distributed as dist


def phase_for(cfg, task: str):
    """The phase whose settings (max_length, doc_stride, ...) featurize `task`: the first that trains
    it, else the first phase."""
    for phase in cfg.phases.values():
        if task in phase.tasks:
            return phase
    return next(iter(cfg.phases.values()))


def first(examples, n: int | None):
    """The first n examples (all of them when n is 0 or None)."""
    return examples.select(range(min(len(examples), n))) if n else examples


class FinishedRun:
    """A run directory with its trained models (`models`: models.json's RunModels; None reads
    RUN/models.json). `on_load(model)` runs once per model loaded."""

    def __init__(self, cfg, root, *, models: RunModels | None = None, on_load=None):
        self.cfg = cfg
        self.root = Path(root)
        self.models = read_run_models(self.root) if models is None else models
        self._on_load = on_load
        self._loaded: tuple[str, tuple] | None = None  # (model directory, (model, tokenizer))

    # -- what was trained ------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        """The tasks with a trained model, in models.json's order."""
        return list(self.models.tasks)

    def evaluated_tasks(self) -> list[str]:
        """The tasks evaluated by default: evaluation.tasks, else the last phase's tasks."""
        cfg = self.cfg
        return list(cfg.evaluation.tasks or cfg.phases[list(cfg.phases)[-1]].tasks)

    def final_model_dir(self) -> str:
        """The last phase's model (retrieval tasks are evaluated with it: they train no head)."""
        phases = self.models.phases
        if not phases:
            raise XRobustError(f"{self.root}: models.json names no phase model; retrieval tasks are evaluated "
                               "with the last phase's model")
        return str(phases.get(list(self.cfg.phases)[-1]) or next(iter(phases.values())))

    def model_dir(self, task: str) -> str:
        if not get_task(task).task_format.has_head:
            return self.final_model_dir()
        if task not in self.models.tasks:
            raise XRobustError(f"task '{task}' was not trained in {self.root} (trained: {', '.join(self.tasks)})")
        return str(self.models.tasks[task])

    def phase(self, task: str):
        return phase_for(self.cfg, task)

    # -- what to evaluate ------------------------------------------------------------------------------
    @staticmethod
    def languages(spec, split: str, wanted=None) -> list[str]:
        """The task's languages on `split`, or those of `wanted` it has (in wanted's order)."""
        available = list(spec.split_languages(split))
        return available if not wanted else [lang for lang in wanted if lang in available]

    def plan(self, tasks, split: str, languages=None) -> list[tuple]:
        """(spec, language) pairs to evaluate; every task must have a model."""
        plan = []
        for name in tasks:
            self.model_dir(name)
            spec = get_task(name)
            plan += [(spec, lang) for lang in self.languages(spec, split, languages)]
        return plan

    # -- models and data -------------------------------------------------------------------------------
    def load(self, task: str) -> tuple:
        """(model, tokenizer) of a task, on this rank's device; one model in memory at a time."""
        model_dir = self.model_dir(task)
        if self._loaded is None or self._loaded[0] != model_dir:
            from transformers import AutoTokenizer

            from ..training.trainer import load_trained

            self._loaded = None  # the previous model is freed before the next one loads
            with context(f"loading the trained model {model_dir}"):
                model = load_trained(Path(model_dir)).to(dist.device())
                if self._on_load is not None:
                    self._on_load(model)
                self._loaded = (model_dir, (model, AutoTokenizer.from_pretrained(model_dir)))
        return self._loaded[1]

    def examples(self, spec, split: str, lang: str, max_examples: int | None = None):
        from ..training.data import load_split

        with context(f"loading {spec.name} {split} ({lang})"):
            return first(load_split(self.cfg, spec, split, lang), max_examples)

    def featurize(self, spec, examples, tokenizer, *, train: bool = False, cache: bool = True):
        """Features with the settings of the task's phase; cache=False skips the feature cache (for
        one-off sets such as the cross-lingual matrix's mixed pairs)."""
        phase = self.phase(spec.name)
        if cache:
            from ..training.data import featurize_cached

            return featurize_cached(self.cfg, spec, examples, tokenizer, phase, train=train)
        from ..data.featurize import featurize
        from ..training.data import task_max_length

        return featurize(examples, spec, tokenizer, max_length=task_max_length(spec, phase),
                         doc_stride=phase.doc_stride, max_query_length=phase.max_query_length, train=train)

    def evaluation_set(self, spec, split: str, lang: str, tokenizer, max_examples: int | None = None):
        """(examples, features) of one task, split and language, as prediction sees them."""
        examples = self.examples(spec, split, lang, max_examples)
        with context(f"featurizing {spec.name} {split} ({lang})"):
            return examples, self.featurize(spec, examples, tokenizer)

    def bitext(self, spec, split: str, lang: str):
        """A retrieval task's two sides and gold pairs (xrobust.data.loading.load_bitext)."""
        from ..data.loading import load_bitext

        cfg = self.cfg
        return load_bitext(spec, split, lang, source=cfg.data.sources.get(spec.name), root=cfg.data.root,
                           xtreme_dir=cfg.data.xtreme_dir)


def read_run_models(root: Path) -> RunModels:
    """RUN/models.json, every path resolved against the run directory (wherever it was moved to)."""
    from ..training.rundir import MODELS_FILE, read_models

    path = Path(root) / MODELS_FILE
    if not path.is_file():
        raise XRobustError(f"{path}: missing; is {root} a finished training run?")
    return read_models(root)
