"""The task registry: every intermediate, target and demo task as a frozen `TaskSpec`.

A spec says what a task's data looks like (format, labels, languages), how it is scored (metric),
which English data trains it (train_task), which head it uses, and where its data comes from by
default (`sources`: Hugging Face hub ids per split, or a local file template for demo tasks).
Loading itself lives in xrobust.data.loading; the per-dataset column mapping in
xrobust.tasks.adapters (named here by `HubSource.adapter`, or given as an `Adapter`).

A new task is one entry in `_real_tasks` (plus its test): the task lists, the presets and the Slurm
arrays read the registry. A task of your own needs no edit here: `module.path:ATTRIBUTE` names a
TaskSpec wherever a task name goes (docs/EXTENDING.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from xrobust.errors import ConfigError
from xrobust.tasks.formats import FORMATS, TaskFormat, get_format

from .adapters import Adapter

SPLITS = ("train", "dev", "test")
PHASES = ("intermediate", "target")
METRICS = ("accuracy", "seqeval_f1", "squad_em_f1", "mlqa_em_f1", "bucc_f1", "tatoeba_accuracy")

# Synthetic languages of the embedded demo data; "xc" is the one written in a non-Latin script.
DEMO_LANGUAGES = ("en", "xa", "xb", "xc")
DEMO_TEMPLATE = "{root}/{task}/{split}-{lang}.jsonl"

NLI_LABELS = ("entailment", "neutral", "contradiction")
# Order of the hub's ClassLabel features, so hub integers and our indices agree.
UPOS_LABELS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)
PANX_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
DEMO_POS_LABELS = (
    "NOUN", "VERB", "ADJ", "DET", "ADP", "NUM", "PROPN", "PRON", "ADV", "CONJ", "PUNCT",
)
DEMO_NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")

# --- XTREME language lists (REFERENCE section 3) -------------------------------------------
XNLI_LANGUAGES = tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
PAWSX_LANGUAGES = tuple("de en es fr ja ko zh".split())
UDPOS_LANGUAGES = tuple(
    "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur "
    "vi yo zh".split()
)
PANX_LANGUAGES = tuple(
    "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru "
    "sw ta te th tl tr ur vi yo zh".split()
)
XQUAD_LANGUAGES = tuple("ar de el en es hi ru th tr vi zh".split())
MLQA_LANGUAGES = tuple("ar de en es hi vi zh".split())
TYDIQA_LANGUAGES = tuple("ar bn en fi id ko ru sw te".split())
BUCC_LANGUAGES = tuple("de fr ru zh".split())
# The 36 XTREME Tatoeba languages (each retrieved against English).
TATOEBA_LANGUAGES = tuple(
    "af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl pt ru sw ta te "
    "th tl tr ur vi zh".split()
)

# UD 2.5 has no dev set for these (their treebanks are test-only, or train+test for kk)
UDPOS_NO_DEV = ("kk", "th", "tl", "yo")
# google/xtreme names its UD-POS configs by English language name ...
UD_LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
# ... and its Tatoeba configs by the (mostly ISO 639-3) codes of the LASER release.
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn",
}


# Adapters that select one language's rows from a multilingual config.
_PER_LANGUAGE_ADAPTERS = frozenset({"xtreme_xnli", "xtreme_tydiqa"})

# allenai/cosmos_qa: main holds only a loading script (datasets >= 4 refuses scripts); this is
# the head of the repository's Parquet export ref (refs/convert/parquet): the script's output,
# same features, 25,262 train / 2,985 validation rows.
COSMOS_QA_REVISION = "ed50fe83db62b355759053b1cd5eef344ee371e0"

# One line printed when a task loads from the hub where the hub's data is not XTREME's.
_EXACT = "for XTREME's data set data.xtreme_dir to the folder XTREME's scripts/download_data.sh writes"
UDPOS_HUB_DIFFERENCE = (
    "google/xtreme UD-POS is not XTREME's: its treebanks were picked by language-name substring "
    "(Greek includes Ancient Greek, Chinese Classical Chinese) and multiword tokens are split into "
    f"syntactic words (XTREME keeps fused forms); {_EXACT} (docs/TASKS.md)")
PAWSX_HUB_DIFFERENCE = (
    "google/xtreme PAWS-X lost rows to quote handling (en train 49,175 of 49,401; es dev 1,961, "
    f"fr dev 1,988, ko test 1,999 of 2,000); {_EXACT} (docs/TASKS.md)")
BUCC_HUB_DIFFERENCE = (
    "google/xtreme bucc18 holds only the gold pairs, without the distractor sentences, so mining "
    f"there is far easier than the BUCC task; {_EXACT}, or give the official files in "
    "data.sources.bucc (docs/TASKS.md)")


@dataclass(frozen=True)
class HubSource:
    """One `datasets.load_dataset(dataset, config, split=split, revision=revision)` call and its
    adapter.

    `config` may contain {lang}, {ud_name} (udpos.<LanguageName>) and {tatoeba_code}. `revision`
    pins a commit or ref where the main branch cannot be loaded (None = main); a config's
    `data.sources.<task>.revision` overrides it.
    """

    dataset: str
    config: str | None
    split: str
    adapter: str | Adapter  # a name in xrobust.tasks.adapters.ADAPTERS, or an Adapter of the task's own
    revision: str | None = None

    @property
    def adapter_name(self) -> str:
        return self.adapter if isinstance(self.adapter, str) else self.adapter.name

    def to_dict(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "adapter": self.adapter_name}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    display_name: str
    format: str
    phase: str
    labels: tuple[str, ...]
    pair: bool
    languages: tuple[str, ...]
    metric: str
    train_task: str | None
    head: str | None
    max_length: int
    doc_stride: int | None = None
    max_query_length: int | None = None
    # split -> hub calls whose canonical outputs are concatenated (ANLI+ has five train parts)
    sources: Mapping[str, tuple[HubSource, ...]] = field(default_factory=dict)
    # split -> languages, where a split exists in fewer languages than the task has
    split_languages_only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # printed once when the default hub source is used: how the hub's data differs from XTREME's
    hub_difference: str = ""
    # local file template used when no hub source applies (demo tasks)
    local_template: str | None = None
    local_only: bool = False  # licensed data (CCGbank): needs data.sources.<task>.path
    open_labels: bool = False  # label set is read from the training data (CCG supertags)
    demo: bool = False
    notes: str = ""

    # `sources` is a dict, so the generated field hash would fail; a task is its name.
    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def head_name(self) -> str:
        """The output head this task trains and predicts with: tasks sharing training data share one
        (`head`), every other task has its own, named after it."""
        return self.head or self.name

    @property
    def task_format(self) -> TaskFormat:
        """The format object (xrobust.tasks.formats) that `format` names."""
        return get_format(self.format)

    @property
    def num_choices(self) -> int | None:
        return len(self.labels) if "choices" in self.task_format.columns else None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def splits(self) -> tuple[str, ...]:
        """Splits this task can load by default (an override may provide any split)."""
        if self.local_template or self.local_only:
            # retrieval is never trained: it only has dev/test bitexts
            return SPLITS if self.task_format.has_head else SPLITS[1:]
        return tuple(s for s in SPLITS if s in self.sources)

    def split_languages(self, split: str) -> tuple[str, ...]:
        """Languages a split exists in. Training is zero-shot, so train is English only; a split
        whose source is not per-language (e.g. XQuAD's dev = SQuAD dev) is English only too."""
        if split == "train" or self.phase == "intermediate":
            return ("en",)
        if split in self.split_languages_only:
            return self.split_languages_only[split]
        if self.demo or self.local_only:
            return self.languages
        hubs = self.sources.get(split, ())
        if not hubs:  # no such split by default; an override may still provide it per language
            return self.languages
        if any(h.adapter_name in _PER_LANGUAGE_ADAPTERS or "{" in (h.config or "")
               for h in hubs):
            return self.languages
        return ("en",)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["labels"] = list(self.labels)
        out["languages"] = list(self.languages)
        out["sources"] = {s: [h.to_dict() for h in hs] for s, hs in self.sources.items()}
        out["split_languages_only"] = {s: list(v) for s, v in self.split_languages_only.items()}
        out["num_labels"] = self.num_labels
        return out


def _hub(dataset: str, config: str | None, adapter: str, revision: str | None = None,
         **splits: str) -> dict:
    """Per-split single-call sources: _hub(id, config, adapter, train="train", dev=...)."""
    return {s: (HubSource(dataset, config, hub_split, adapter, revision),)
            for s, hub_split in splits.items()}


_GLUE = "nyu-mll/glue"
_XTREME = "google/xtreme"

_MNLI_SOURCES = _hub(_GLUE, "mnli", "glue_mnli", train="train", dev="validation_matched",
                     test="validation_mismatched")
_SQUAD_SOURCES = _hub("rajpurkar/squad", "plain_text", "squad", train="train", dev="validation")

_ANLI_PLUS_SOURCES = {
    "train": tuple(HubSource("facebook/anli", None, f"train_r{r}", "anli") for r in (1, 2, 3))
    + (HubSource(_GLUE, "mnli", "train", "glue_mnli"),
       HubSource("stanfordnlp/snli", "plain_text", "train", "snli")),
    "dev": tuple(HubSource("facebook/anli", None, f"dev_r{r}", "anli") for r in (1, 2, 3)),
    "test": tuple(HubSource("facebook/anli", None, f"test_r{r}", "anli") for r in (1, 2, 3)),
}


def _real_tasks() -> list[TaskSpec]:
    en = ("en",)
    inter = dict(phase="intermediate", languages=en)
    return [
        # ---- intermediate tasks, in the paper's order -------------------------------------
        TaskSpec("anli_plus", "ANLI+", "classification", labels=NLI_LABELS, pair=True,
                 metric="accuracy", train_task="anli_plus", head="anli_plus", max_length=128,
                 sources=_ANLI_PLUS_SOURCES,
                 notes="train = ANLI r1-r3 + MNLI + SNLI (SNLI label -1 dropped); dev/test = ANLI "
                       "r1-r3; one head for all parts", **inter),
        TaskSpec("mnli", "MNLI", "classification", labels=NLI_LABELS, pair=True,
                 metric="accuracy", train_task="mnli", head="mnli", max_length=128,
                 sources=_MNLI_SOURCES,
                 notes="GLUE test labels are hidden: dev = matched, test = mismatched validation",
                 **inter),
        TaskSpec("qqp", "QQP", "classification", labels=("not_duplicate", "duplicate"),
                 pair=True, metric="accuracy", train_task="qqp", head="qqp", max_length=128,
                 sources=_hub(_GLUE, "qqp", "glue_qqp", train="train", dev="validation"),
                 notes="GLUE test labels are hidden: no test split", **inter),
        TaskSpec("sst2", "SST-2", "classification", labels=("negative", "positive"), pair=False,
                 metric="accuracy", train_task="sst2", head="sst2", max_length=128,
                 sources=_hub(_GLUE, "sst2", "glue_sst2", train="train", dev="validation"),
                 notes="GLUE test labels are hidden: no test split", **inter),
        TaskSpec("squad", "SQuAD v1.1", "span_qa", labels=(), pair=True, metric="squad_em_f1",
                 train_task="squad", head="squad", max_length=384, doc_stride=128,
                 max_query_length=64, sources=_SQUAD_SOURCES, **inter),
        TaskSpec("hellaswag", "HellaSwag", "multiple_choice", labels=("0", "1", "2", "3"),
                 pair=True, metric="accuracy", train_task="hellaswag", head="hellaswag",
                 max_length=128,
                 sources=_hub("Rowan/hellaswag", None, "hellaswag", train="train",
                              dev="validation"),
                 notes="test labels are hidden: no test split", **inter),
        TaskSpec("cosmosqa", "Cosmos QA", "multiple_choice", labels=("0", "1", "2", "3"),
                 pair=True, metric="accuracy", train_task="cosmosqa", head="cosmosqa",
                 max_length=128,
                 sources=_hub("allenai/cosmos_qa", None, "cosmos_qa", COSMOS_QA_REVISION,
                              train="train", dev="validation"),
                 notes="test labels are hidden: no test split; main is script-only, so the "
                       "repository's Parquet export is pinned", **inter),
        TaskSpec("commonsenseqa", "CommonsenseQA", "multiple_choice",
                 labels=("A", "B", "C", "D", "E"), pair=True, metric="accuracy",
                 train_task="commonsenseqa", head="commonsenseqa", max_length=128,
                 sources=_hub("tau/commonsense_qa", None, "commonsense_qa", train="train",
                              dev="validation"),
                 notes="test labels are hidden: no test split", **inter),
        TaskSpec("ccg", "CCG supertagging", "tagging", labels=(), pair=False,
                 metric="accuracy", train_task="ccg", head="ccg", max_length=128,
                 local_only=True, open_labels=True,
                 notes="CCGbank is LDC-licensed: set data.sources.ccg.path; the tag set is read "
                       "from the training split", **inter),
        # ---- XTREME target tasks ----------------------------------------------------------
        TaskSpec("xnli", "XNLI", "classification", "target", labels=NLI_LABELS, pair=True,
                 languages=XNLI_LANGUAGES, metric="accuracy", train_task="mnli", head="xnli",
                 max_length=128,
                 sources={"train": _MNLI_SOURCES["train"],
                          **_hub(_XTREME, "XNLI", "xtreme_xnli", dev="validation",
                                 test="test")},
                 notes="English training data is MNLI; XNLI rows are filtered by language"),
        TaskSpec("pawsx", "PAWS-X", "classification", "target",
                 labels=("not_paraphrase", "paraphrase"), pair=True, languages=PAWSX_LANGUAGES,
                 metric="accuracy", train_task="pawsx", head="pawsx", max_length=128,
                 sources=_hub(_XTREME, "PAWS-X.{lang}", "xtreme_pawsx", train="train",
                              dev="validation", test="test"),
                 hub_difference=PAWSX_HUB_DIFFERENCE),
        TaskSpec("udpos", "UD-POS", "tagging", "target", labels=UPOS_LABELS, pair=False,
                 languages=UDPOS_LANGUAGES, metric="seqeval_f1", train_task="udpos",
                 head="udpos", max_length=128,
                 sources=_hub(_XTREME, "udpos.{ud_name}", "xtreme_udpos", train="train",
                              dev="validation", test="test"),
                 split_languages_only={"dev": tuple(
                     lang for lang in UDPOS_LANGUAGES if lang not in UDPOS_NO_DEV)},
                 hub_difference=UDPOS_HUB_DIFFERENCE,
                 notes="kk, th, tl, yo have no dev split (UD 2.5)"),
        TaskSpec("panx", "PAN-X", "tagging", "target", labels=PANX_LABELS, pair=False,
                 languages=PANX_LANGUAGES, metric="seqeval_f1", train_task="panx", head="panx",
                 max_length=128,
                 sources=_hub(_XTREME, "PAN-X.{lang}", "xtreme_panx", train="train",
                              dev="validation", test="test")),
        TaskSpec("xquad", "XQuAD", "span_qa", "target", labels=(), pair=True,
                 languages=XQUAD_LANGUAGES, metric="squad_em_f1", train_task="squad",
                 head="squad_xqa", max_length=384, doc_stride=128, max_query_length=64,
                 sources={"train": _SQUAD_SOURCES["train"], "dev": _SQUAD_SOURCES["dev"],
                          **_hub(_XTREME, "XQuAD.{lang}", "xtreme_squad_layout",
                                 test="validation")},
                 notes="XQuAD has one split (hub 'validation'), used as test; dev = SQuAD dev"),
        TaskSpec("mlqa", "MLQA", "span_qa", "target", labels=(), pair=True,
                 languages=MLQA_LANGUAGES, metric="mlqa_em_f1", train_task="squad",
                 head="squad_xqa", max_length=384, doc_stride=128, max_query_length=64,
                 sources={"train": _SQUAD_SOURCES["train"],
                          **_hub(_XTREME, "MLQA.{lang}.{lang}", "xtreme_squad_layout",
                                 dev="validation", test="test")},
                 notes="context and question in the same language"),
        TaskSpec("tydiqa", "TyDiQA-GoldP", "span_qa", "target", labels=(), pair=True,
                 languages=TYDIQA_LANGUAGES, metric="squad_em_f1", train_task="tydiqa",
                 head="tydiqa", max_length=384, doc_stride=128, max_query_length=64,
                 sources=_hub(_XTREME, "tydiqa", "xtreme_tydiqa", train="train",
                              test="validation"),
                 notes="train filtered to English ids only (zero-shot); the GoldP dev set is "
                       "the test set, filtered by language; no dev split"),
        TaskSpec("bucc", "BUCC 2018", "retrieval", "target", labels=(), pair=False,
                 languages=BUCC_LANGUAGES, metric="bucc_f1", train_task=None, head=None,
                 max_length=128,
                 sources=_hub(_XTREME, "bucc18.{lang}", "xtreme_bucc", dev="validation",
                              test="test"),
                 hub_difference=BUCC_HUB_DIFFERENCE,
                 notes="the hub config holds gold pairs only (no distractors): use data.xtreme_dir "
                       "or the official files for real mining"),
        TaskSpec("tatoeba", "Tatoeba", "retrieval", "target", labels=(), pair=False,
                 languages=TATOEBA_LANGUAGES, metric="tatoeba_accuracy", train_task=None,
                 head=None, max_length=128,
                 sources=_hub(_XTREME, "tatoeba.{tatoeba_code}", "xtreme_tatoeba",
                              test="validation"),
                 notes="one split (hub 'validation'), used as test; each language vs English"),
    ]


def _demo_tasks() -> list[TaskSpec]:
    common = dict(local_template=DEMO_TEMPLATE, demo=True)
    inter = dict(phase="intermediate", languages=("en",), **common)
    target = dict(phase="target", languages=DEMO_LANGUAGES, **common)
    qa = dict(max_length=384, doc_stride=128, max_query_length=64)
    return [
        TaskSpec("demo_nli", "Demo NLI", "classification", labels=NLI_LABELS, pair=True,
                 metric="accuracy", train_task="demo_nli", head="demo_nli", max_length=128,
                 **inter),
        TaskSpec("demo_sentiment", "Demo sentiment", "classification",
                 labels=("negative", "positive"), pair=False, metric="accuracy",
                 train_task="demo_sentiment", head="demo_sentiment", max_length=128, **inter),
        TaskSpec("demo_mc", "Demo multiple choice", "multiple_choice",
                 labels=("0", "1", "2", "3"), pair=True, metric="accuracy",
                 train_task="demo_mc", head="demo_mc", max_length=128, **inter),
        TaskSpec("demo_qa", "Demo QA", "span_qa", labels=(), pair=True, metric="squad_em_f1",
                 train_task="demo_qa", head="demo_qa", **qa, **inter),
        TaskSpec("demo_tag", "Demo tagging", "tagging", labels=DEMO_POS_LABELS, pair=False,
                 metric="seqeval_f1", train_task="demo_tag", head="demo_tag", max_length=128,
                 **inter),
        TaskSpec("demo_xnli", "Demo XNLI", "classification", labels=NLI_LABELS, pair=True,
                 metric="accuracy", train_task="demo_xnli", head="demo_xnli", max_length=128,
                 **target),
        TaskSpec("demo_pos", "Demo POS", "tagging", labels=DEMO_POS_LABELS, pair=False,
                 metric="seqeval_f1", train_task="demo_pos", head="demo_pos", max_length=128,
                 **target),
        TaskSpec("demo_ner", "Demo NER", "tagging", labels=DEMO_NER_LABELS, pair=False,
                 metric="seqeval_f1", train_task="demo_ner", head="demo_ner", max_length=128,
                 **target),
        TaskSpec("demo_xqa", "Demo cross-lingual QA", "span_qa", labels=(), pair=True,
                 metric="squad_em_f1", train_task="demo_xqa", head="demo_xqa", **qa, **target),
        TaskSpec("demo_tatoeba", "Demo retrieval", "retrieval", labels=(), pair=False,
                 metric="tatoeba_accuracy", train_task=None, head=None, max_length=128,
                 notes="one file of translation pairs {id, source, target} per non-English language",
                 **{**target, "languages": DEMO_LANGUAGES[1:]}),
    ]


_REGISTRY: dict[str, TaskSpec] = {t.name: t for t in _real_tasks() + _demo_tasks()}

# Derived from the registry (its order is the paper's): a new entry above joins them, and with them
# the presets, the multi-task preset's `intermediate` list and the Slurm arrays' task lists.
INTERMEDIATE_TASKS = tuple(name for name, t in _REGISTRY.items() if t.phase == "intermediate" and not t.demo)
TARGET_TASKS = tuple(name for name, t in _REGISTRY.items() if t.phase == "target" and not t.demo)
DEMO_TASKS = tuple(name for name, t in _REGISTRY.items() if t.demo)

# `module.path:ATTRIBUTE` names a TaskSpec defined outside xrobust (docs/EXTENDING.md); those a
# process has imported, by reference (all_tasks lists only the registry's own).
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_IMPORTED: dict[str, TaskSpec] = {}


def get_task(name: str) -> TaskSpec:
    """A registered task by name, or a user's task by reference (`mypkg.tasks:MY_TASK`)."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        if isinstance(name, str) and _REFERENCE.match(name):
            return _IMPORTED.get(name) or _import_task(name)
        known = ", ".join(_REGISTRY)
        raise ConfigError(f"unknown task {name!r}; known tasks: {known}; or a task of your own as "
                          "'module.path:ATTRIBUTE' (docs/EXTENDING.md)") from None


def _import_task(reference: str) -> TaskSpec:
    """Import a user's TaskSpec and register it under its reference, which is its name from then on
    (configs, models.json, results): a run directory names the same task in any later process."""
    module_name, attribute = reference.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"task {reference!r}: cannot import module '{module_name}' ({exc}); is it installed "
                          "or on PYTHONPATH?") from None
    spec = getattr(module, attribute, None)
    if not isinstance(spec, TaskSpec):
        raise ConfigError(f"task {reference!r}: expected a xrobust.tasks.TaskSpec at {module_name}.{attribute}, "
                          f"got {type(spec).__name__}")
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ConfigError(f"task {reference!r}: its name '{spec.name}' is a registered task already; give it "
                          "another name")
    # the spec's own name stays its head's name (a module name: no '.' or ':'); a train_task that is
    # the spec itself follows it to the reference
    if not re.fullmatch(r"[A-Za-z_][\w-]*", spec.head or spec.name):
        raise ConfigError(f"task {reference!r}: its head is named {spec.head or spec.name!r}; a head name has "
                          "letters, digits, '_' and '-' only (set `name` or `head` so)")
    own = {spec.name, reference}
    task = dataclasses.replace(spec, name=reference, head=spec.head or spec.name,
                               train_task=reference if spec.train_task in own else spec.train_task)
    _check_spec(task, {**_REGISTRY, **_IMPORTED, reference: task})
    _IMPORTED[reference] = task
    return task


def all_tasks(include_demo: bool = True) -> list[TaskSpec]:
    return [t for t in _REGISTRY.values() if include_demo or not t.demo]


def _check_spec(t: TaskSpec, registry: Mapping[str, TaskSpec]) -> None:
    """Cheap invariants: a wrong entry fails loudly rather than at train time."""
    problems = [what for what, ok in (
        (f"format {t.format!r} is not one of {', '.join(FORMATS)}", t.format in FORMATS),
        (f"phase {t.phase!r} is not one of {', '.join(PHASES)}", t.phase in PHASES),
        (f"metric {t.metric!r} is not one of {', '.join(METRICS)}", t.metric in METRICS),
        (f"sources has splits other than {', '.join(SPLITS)}", set(t.sources) <= set(SPLITS)),
        (f"train_task {t.train_task!r} is not a task", t.train_task is None or t.train_task in registry),
        ("doc_stride is set exactly for windowed (span QA) tasks",
         t.format not in FORMATS or get_format(t.format).windowed == (t.doc_stride is not None)),
        ("split_languages_only names a split or languages the task lacks",
         all(split in SPLITS and set(langs) <= set(t.languages) for split, langs in t.split_languages_only.items())),
    ) if not ok]
    if problems:
        raise ConfigError(f"task {t.name!r}: " + "; ".join(problems))


for _spec in _REGISTRY.values():
    _check_spec(_spec, _REGISTRY)
