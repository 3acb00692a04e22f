"""RS-DA neighbours for the demo world: its English words grouped by lexicon class.

The demo has no true synonyms, so these neighbours exercise the mechanics of RS-DA
(xrobust.adversarial.augment reads the file): they keep sentiment labels but can change NLI labels.
"""

from __future__ import annotations

from pathlib import Path

from xrobust.demo import lexicon as X
from xrobust.io import atomic_write_text


def lexicon_groups() -> list[list[str]]:
    """Same-class English words of the demo lexicon: object nouns singular and plural, person
    nouns, verbs by sentiment polarity and form, adjectives within their class."""
    pos_, neg_ = set(X.POSITIVE_VERBS), set(X.NEGATIVE_VERBS)
    groups = [[sg for sg, _ in X.OBJECT_NOUNS.values()], [pl for _, pl in X.OBJECT_NOUNS.values()],
              list(X.PERSON_NOUNS.values())]
    for verbs in (pos_, neg_, set(X.NEUTRAL_VERBS)):  # polarity kept: sentiment labels survive
        groups.append([X.VERBS[v][0] for v in sorted(verbs)])
        groups.append([X.VERBS[v][1] for v in sorted(verbs)])
    groups.extend(list(adjs) for adjs in X.ADJ_CLASSES.values())
    return groups


def write_demo_neighbours(path) -> Path:
    """Write the demo's neighbours file (the format of xrobust.adversarial.augment.read_neighbours)
    to `path`; returns it."""
    lines = ["# xrobust demo neighbours: same-class English words (not meaning-preserving synonyms)"]
    for group in lexicon_groups():
        uniq = sorted(set(group))
        for w in uniq:
            lines.append(w + "\t" + " ".join(x for x in uniq if x != w))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
