"""A tiny multilingual tokenizer for tests, built offline (no hub access).

Sentences are generated from per-script syllable inventories so the SentencePiece model sees
Latin, Cyrillic, Greek, Arabic, Devanagari and CJK text. Built once per test session.
"""

from __future__ import annotations

import random

import pytest

SYLLABLES = {
    "en": "ba be bi bo ka ke ko ta te ti to ra re ri ro la le li lo ma me mo na ne no sa se so".split(),
    "de": "der die das und ist ein sch ung lä ü ö ßen".split(),
    "ru": "ба бе ка ко та те ра ре ла ле ми мо на но ст ов ий".split(),
    "el": "κα κε τα τε ρα ρε λα λε μα με πο νο".split(),
    "ar": "با بي كا كو تا تي را ري لا لي ال من".split(),
    "hi": "का की ता ती रा री ला ली मा मी ने है".split(),
    "zh": list("北京是首都中国人大学生上海天气很好的了"),
    "ja": list("東京はにのをですましたかな"),
}


def generate_sentences(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    langs = sorted(SYLLABLES)
    out = []
    for _ in range(n):
        syl = SYLLABLES[rng.choice(langs)]
        words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(4, 14))]
        out.append(" ".join(words) + rng.choice([".", "?", "!", ",", ""]))
    # digits and ASCII punctuation so numbers and quotes do not all become <unk>
    out += [f"{i} {i * 7} ({i}) \"{i}\" - {i}:{i % 60:02d}" for i in range(50)]
    return out


def build_tokenizer(tmp_dir, vocab_size: int = 500, seed: int = 0):
    from xrobust.demo.tokenizer import train_sentencepiece_tokenizer

    return train_sentencepiece_tokenizer(generate_sentences(seed=seed), tmp_dir, vocab_size)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer, tmp_path_factory):
    d = tmp_path_factory.mktemp("tokenizer_saved")
    tokenizer.save_pretrained(str(d))
    return d
