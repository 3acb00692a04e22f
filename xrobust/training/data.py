"""A phase's data: English train and dev sets per task, global batches, and the multi-task sampler.

Every rank builds the same global batch order (seeded), then takes its own micro-batches, so a run
sees the same examples per optimizer step at any world size and after any resume.
"""

from __future__ import annotations

from pathlib import Path

from ..data.loading import load_examples, with_labels
from ..data.stats import data_report, log_report
from ..errors import DataError, context
from ..tasks import get_task

def task_max_length(spec, phase) -> int:
    return phase.max_length or spec.max_length


def _source(cfg, task_name):
    return cfg.data.sources.get(task_name)


def origin(cfg, spec, split: str, lang: str) -> str:
    """Where a task's examples come from, for messages: the configured source, else the task."""
    source = _source(cfg, spec.name)
    where = f" from data.sources.{spec.name} = {getattr(source, 'path', source)}" if source is not None else ""
    return f"task '{spec.name}' {split} ({lang}){where}"


def load_split(cfg, spec, split: str, lang: str):
    """Canonical examples of one task, split and language (config overrides applied)."""
    with context(f"loading {origin(cfg, spec, split, lang)}"):
        return load_examples(spec, split, lang, source=_source(cfg, spec.name), root=cfg.data.root,
                             xtreme_dir=cfg.data.xtreme_dir)


def featurize_cached(cfg, spec, examples, tokenizer, phase, *, train: bool):
    """Features of loaded examples (the loader has checked their text: UTF-8, none missing or blank)."""
    from ..data.cache import cached_featurize

    return cached_featurize(examples, spec, tokenizer, Path(cfg.data.cache_dir).expanduser(),
                            max_length=task_max_length(spec, phase), doc_stride=phase.doc_stride,
                            max_query_length=phase.max_query_length, train=train)


class TaskData:
    def __init__(self, cfg, spec, phase, tokenizer, seed: int):
        from ..data.batching import LengthGroupedBatchSampler
        from ..data.featurize import feature_lengths

        self.spec = spec
        train_spec = get_task(spec.train_task) if spec.train_task and spec.train_task != spec.name else spec
        examples = load_split(cfg, train_spec, "train", "en")
        adv = phase.adversarial
        if adv.method == "rs-da":
            from ..adversarial.augment import augment_examples

            examples = augment_examples(examples, train_spec, adv.neighbours, adv.copies, seed)
        self.features = featurize_cached(cfg, spec, examples, tokenizer, phase, train=True)
        self.report = log_report(spec.name, "train", "en",
                                 data_report(train_spec, "train", "en", examples, self.features, train=True))
        if len(self.features) < phase.batch_size:
            raise DataError(f"task '{spec.name}': {len(self.features)} training features, fewer than one batch "
                            f"(phases.*.batch_size = {phase.batch_size})")
        self.batches = LengthGroupedBatchSampler(feature_lengths(self.features), phase.batch_size, seed=seed,
                                                 drop_last=True)
        self.dev_examples = self.dev_features = None
        if "dev" in spec.splits():
            dev = load_split(cfg, spec, "dev", "en")
            if phase.max_dev_examples:
                dev = dev.select(range(min(len(dev), phase.max_dev_examples)))
            self.dev_examples = dev
            self.dev_features = featurize_cached(cfg, spec, dev, tokenizer, phase, train=False)


class PhaseData:
    def __init__(self, cfg, phase, tokenizer, seed: int):
        from ..data.collate import Collator
        from ..data.sampler import MultiTaskSampler

        self.phase = phase
        self.tokenizer = tokenizer
        by_head: dict = {}
        for name in phase.tasks:  # tasks sharing a head (XQuAD, MLQA) share its training data too
            spec = with_labels(get_task(name), source=_source(cfg, name), root=cfg.data.root,
                               xtreme_dir=cfg.data.xtreme_dir)  # CCG: its tag set, read from the data
            by_head.setdefault(spec.head_name, spec)
        self.specs = list(by_head.values())
        self.tasks = {spec.name: TaskData(cfg, spec, phase, tokenizer, seed + i)
                      for i, spec in enumerate(self.specs)}
        self.reports = {name: t.report for name, t in self.tasks.items()}  # what each task trains on
        self.collators = {name: Collator(tokenizer, head=t.spec.head_name) for name, t in self.tasks.items()}
        sizes = {name: len(t.features) for name, t in self.tasks.items()}
        self.sampler = MultiTaskSampler(sizes, phase.sampler, temperature=phase.temperature, cap=phase.cap,
                                        seed=seed)
        self._iters = {name: iter(t.batches) for name, t in self.tasks.items()}

    def batches_per_epoch(self) -> int:
        return sum(len(t.features) // self.phase.batch_size for t in self.tasks.values())

    def has_dev(self) -> bool:
        return any(t.dev_features is not None for t in self.tasks.values())

    def dev_sets(self) -> list[tuple]:
        """(task name, spec, examples, features) of every task with an English dev set."""
        return [(name, t.spec, t.dev_examples, t.dev_features) for name, t in self.tasks.items()
                if t.dev_features is not None]

    def _next_global_batch(self, name: str) -> list[int]:
        try:
            return next(self._iters[name])
        except StopIteration:  # the sampler has rolled over to the next epoch (a new shuffle)
            self._iters[name] = iter(self.tasks[name].batches)
            return next(self._iters[name])

    def next_step(self, rank: int, world: int, gas: int):
        name = self.sampler.sample()
        indices = self._next_global_batch(name)
        micro = self.phase.micro_batch_size
        chunks = [indices[i:i + micro] for i in range(0, len(indices), micro)]
        mine = chunks[rank * gas:(rank + 1) * gas]
        features = self.tasks[name].features
        batches = [self.collators[name]([features[i] for i in chunk]) for chunk in mine]
        return name, batches

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(),
                "batches": {name: t.batches.state_dict() for name, t in self.tasks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        for name, t in self.tasks.items():
            t.batches.load_state_dict(state["batches"][name])
            self._iters[name] = iter(t.batches)
