"""RS-DA: synonym-substitution augmentation of English training examples (randomized smoothing by
data augmentation, as in SAFER, Ye et al. 2020). A data-level method: the training micro-step is
plain; this module produces the augmented training set.

Neighbours file (UTF-8 TSV), one word per line:
    word<TAB>neighbour1 neighbour2 ...
Keys are matched case-insensitively; blank lines and lines starting with '#' are ignored. Each
word that has neighbours is replaced by a uniform draw from {word} + its neighbours (the word
itself stays possible, as in SAFER's perturbation set); the capitalization of the original word's
first letter is kept.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from ..errors import DataError
from ..tasks.formats import get_format

_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\s+|.", re.UNICODE)


def read_neighbours(path) -> dict[str, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: neighbours file not found (TSV: word<TAB>neighbour1 neighbour2 ...)")
    table: dict[str, list[str]] = {}
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, tab, rest = line.partition("\t")
        if not tab or not word.strip():
            raise DataError(f"{path}:{no}: expected 'word<TAB>neighbour1 neighbour2 ...', got {line!r}")
        neighbours = [n for n in rest.split() if n.lower() != word.strip().lower()]
        if neighbours:
            table.setdefault(word.strip().lower(), []).extend(neighbours)
    return table


def _sub_word(word: str, table, rng: random.Random) -> str:
    options = table.get(word.lower())
    if not options:
        return word
    choice = rng.choice([word] + options)
    if choice is not word and word[:1].isupper():
        choice = choice[:1].upper() + choice[1:]
    return choice


def substitute(text: str, table, rng: random.Random) -> str:
    """Replace words of `text` by neighbours; whitespace and punctuation are kept as they are."""
    if not text:
        return text
    return "".join(_sub_word(t, table, rng) if t[:1].isalpha() else t for t in _TOKEN.findall(text))


def augment_examples(dataset, spec, neighbours_path, copies: int, seed: int):
    """The canonical examples of `dataset` followed by `copies` augmented copies of each (ids get
    the suffix '#rsda<k>'); returns a datasets.Dataset. `spec` is a TaskSpec or a format name."""
    import datasets

    fmt = get_format(spec if isinstance(spec, str) else spec.format)
    if copies < 1:
        raise DataError(f"rs-da: copies must be >= 1, got {copies}")
    table = read_neighbours(neighbours_path)
    rows = [dict(ex) for ex in dataset]
    out = list(rows)
    for k in range(1, copies + 1):
        for i, ex in enumerate(rows):
            rng = random.Random(f"{seed}/{k}/{i}")  # independent of order and of other copies
            aug = fmt.augment(ex, lambda text: substitute(text, table, rng),
                              lambda word: _sub_word(word, table, rng) if word[:1].isalpha() else word)
            aug["id"] = f"{ex.get('id', i)}#rsda{k}"
            out.append(aug)
    if isinstance(dataset, datasets.Dataset):
        return datasets.Dataset.from_list(out, features=dataset.features)
    return datasets.Dataset.from_list(out)
