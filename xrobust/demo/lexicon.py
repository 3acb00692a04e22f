"""The demo world's languages: one concept inventory, four lexicons, four grammars.

A sentence is built as a meaning (a small dict of concepts) and rendered per language into
tokens that carry their POS tag, NER tag and semantic role, so every task label is computed from
the meaning and every surface form (text, char offsets, tag sequences) from the rendering.

Languages:
- en: English words, SVO, adjective before noun, prepositions, articles.
- xa: Latin script, mostly cognates of English (cup -> cupo), SVO, adjective before noun,
  prepositions, articles, time adverb first.
- xb: Latin script, mostly cognates (cup -> kupek), verb-final (SOV), adjective after noun,
  postpositions, wh-words in situ.
- xc: cognates of English written in Cyrillic (cup -> куп), SVO, no articles.
A quarter of each lexicon is not cognate (generated words), and function words are the
language's own but two. Shared anchors across all four: digits, proper names (people, places,
organisations), punctuation, and the particles `SHARED` (negation and future).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LANGUAGES = ("en", "xa", "xb", "xc")

# ---- concept inventory -------------------------------------------------------------------
# Object nouns: concept -> (english singular, english plural).
OBJECT_NOUNS = {
    "car": ("car", "cars"), "book": ("book", "books"), "apple": ("apple", "apples"),
    "house": ("house", "houses"), "dog": ("dog", "dogs"), "cat": ("cat", "cats"),
    "letter": ("letter", "letters"), "table": ("table", "tables"), "bottle": ("bottle", "bottles"),
    "chair": ("chair", "chairs"), "ball": ("ball", "balls"), "key": ("key", "keys"),
    "bag": ("bag", "bags"), "flower": ("flower", "flowers"), "horse": ("horse", "horses"),
    "boat": ("boat", "boats"), "shirt": ("shirt", "shirts"), "box": ("box", "boxes"),
    "cup": ("cup", "cups"), "hat": ("hat", "hats"),
    # cognates: xa/xb derive these from the English stem
    "taxi": ("taxi", "taxis"), "radio": ("radio", "radios"), "piano": ("piano", "pianos"),
    "camera": ("camera", "cameras"), "banana": ("banana", "bananas"), "lamp": ("lamp", "lamps"),
}
COGNATES = {"taxi", "radio", "piano", "camera", "banana", "lamp"}
# Person nouns can be agents ("the teacher"); never counted, so no plural needed.
PERSON_NOUNS = {
    "man": "man", "woman": "woman", "child": "child", "teacher": "teacher", "doctor": "doctor",
    "farmer": "farmer", "student": "student", "baker": "baker",
}
# Transitive event verbs: concept -> (past, base). Polarity feeds the sentiment task.
VERBS = {
    "see": ("saw", "see"), "buy": ("bought", "buy"), "sell": ("sold", "sell"), "find": ("found", "find"),
    "lose": ("lost", "lose"), "take": ("took", "take"), "paint": ("painted", "paint"),
    "wash": ("washed", "wash"), "carry": ("carried", "carry"), "open": ("opened", "open"),
    "like": ("liked", "like"), "love": ("loved", "love"), "enjoy": ("enjoyed", "enjoy"),
    "admire": ("admired", "admire"), "hate": ("hated", "hate"), "dislike": ("disliked", "dislike"),
    "fear": ("feared", "fear"), "break": ("broke", "break"),
}
POSITIVE_VERBS = ("like", "love", "enjoy", "admire")
NEGATIVE_VERBS = ("hate", "dislike", "fear", "break")
NEUTRAL_VERBS = tuple(v for v in VERBS if v not in POSITIVE_VERBS + NEGATIVE_VERBS)
# Fact verbs relate people, organisations and places (NER / QA contexts).
FACT_VERBS = {"work": ("worked", "work"), "live": ("lived", "live"), "visit": ("visited", "visit"),
              "meet": ("met", "meet"), "found_org": ("founded", "found"), "join": ("joined", "join")}
# Adjectives in mutually exclusive classes: swapping within a class contradicts.
ADJ_CLASSES = {
    "color": ("red", "blue", "green", "yellow", "white", "black"),
    "size": ("big", "small"),
    "age": ("old", "new"),
}
ADJECTIVES = tuple(a for cls in ADJ_CLASSES.values() for a in cls)
ADJ_CLASS_OF = {a: c for c, adjs in ADJ_CLASSES.items() for a in adjs}
TIME_ADVERBS = ("yesterday", "today")  # of past events; a future event's "yesterday" is "tomorrow"
# The negation and the future particle are the same word in all four languages, shared anchors as
# names and digits are: the demo NLI's labels turn on them (docs/DEMO.md says why they are shared).
SHARED = ("never", "will")
FUNCTION_WORDS = (
    "the", "a", "in", "with", "for", "at", "and", "never", "someone", "he", "she", "they",
    "who", "what", "where", "did", "is", "office", "opened_office", "will", "tomorrow",
)

# ---- proper names: identical in every language ------------------------------------------------
FIRST_NAMES_A = ("Anna", "Tomas", "Maria", "Ivan", "Lena", "Omar", "Sofia", "Karl", "Nina", "Pablo",
                 "Elif", "Jonas", "Mira", "Hugo", "Yara", "Leo")
FIRST_NAMES_B = ("Ada", "Bruno", "Clara", "Dario", "Greta", "Kemal", "Rosa", "Viktor")
SURNAMES_A = ("Berg", "Lind", "Soto", "Petrov", "Costa", "Novak", "Haddad", "Moreau", "Kato", "Silva")
SURNAMES_B = ("Weber", "Okafor", "Dalton", "Ruiz")
PLACES_A = ("Valdora", "Mirenburg", "Tesh", "Port Elna", "New Kell", "Oskana", "San Ilario", "Brava",
            "Lake Orin", "Dunmore")
PLACES_B = ("Kaldur", "Fort Amsel", "Serin", "East Vale")
ORGS_A = ("Orion Labs", "Nordic Rail", "Blue River Bank", "Kestrel Media", "Union Steel", "Apex",
          "Helio Motors", "Tarn Foods")
ORGS_B = ("Vega Air", "Marlow Group", "Cobalt Systems", "Quill")


# ---- lexicon generation ------------------------------------------------------------------------
# Pseudo-words come from per-language syllable inventories with a FIXED seed: the languages are
# the same in every world, only the sampled sentences depend on the world seed.
_SYLLABLES = {
    "xa": ("ka", "lo", "mi", "ra", "ve", "no", "ti", "sa", "pe", "du", "ri", "na", "fo", "le", "zu", "ba"),
    "xb": ("kor", "tam", "uz", "bel", "ok", "dar", "sen", "gul", "mek", "ta", "ir", "yol", "ban", "eš"),
    "xc": ("vo", "ra", "mil", "ka", "dro", "se", "gor", "na", "ti", "lu", "ber", "zo", "ples", "ko"),
}
_CYRILLIC = {
    "a": "а", "b": "б", "v": "в", "g": "г", "d": "д", "e": "е", "z": "з", "i": "и", "k": "к", "l": "л",
    "m": "м", "n": "н", "o": "о", "p": "п", "r": "р", "s": "с", "t": "т", "u": "у", "f": "ф", "h": "х",
    "c": "ц", "y": "ы", "š": "ш", "j": "й", "č": "ч",
}
_LEXICON_SEED = 20240611


def to_cyrillic(word: str) -> str:
    return "".join(_CYRILLIC.get(ch, ch) for ch in word)


@dataclass(frozen=True)
class Entry:
    form: str  # base / singular / past form as used in sentences
    plural: str | None = None  # nouns
    base: str | None = None  # English verb base form (do-support questions, the future)


def _make_words(lang: str, n: int, rng: random.Random, taken: set[str]) -> list[str]:
    out = []
    syl = _SYLLABLES[lang]
    while len(out) < n:
        w = "".join(rng.choice(syl) for _ in range(rng.choice((2, 2, 3))))
        if w in taken or len(w) < 3:
            continue
        taken.add(w)
        out.append(w)
    return out


# Cognates: most content words of xa, xb and xc descend from the English word (as Romance
# languages share Latin roots): a few systematic spelling changes, then a language-specific
# ending. xa and xb stay in the Latin script, so the tokenizer shares sub-words (the root) with
# English; xc is the same kind of cognate language written in Cyrillic, so it shares no
# sub-words and is aligned only through parallel and code-switched pretraining text.
# A fixed share of each lexicon is NOT cognate (generated words), so the languages are not
# English with different endings.
NON_COGNATE_SHARE = 0.25
_SOUND_CHANGES = {
    "xa": (("th", "t"), ("sh", "s"), ("ck", "k"), ("w", "v"), ("y", "i")),
    "xb": (("th", "d"), ("sh", "š"), ("ck", "k"), ("c", "k"), ("w", "v"), ("y", "i")),
    "xc": (("th", "t"), ("sh", "š"), ("ch", "č"), ("ck", "k"), ("c", "k"), ("q", "k"), ("x", "ks"),
           ("w", "v"), ("y", "i")),
}
# per language and word class: (ending, plural ending); verbs get the past suffix on the root
_ENDINGS = {
    "xa": {"object": ("o", "i"), "person": ("o", None), "adj": ("a", None), "time": ("e", None)},
    "xb": {"object": ("ek", "ekler"), "person": ("ci", None), "adj": ("li", None), "time": ("in", None)},
    "xc": {"object": ("", "y"), "person": ("", None), "adj": ("yj", None), "time": ("", None)},
}
_VERB_PAST = {"xa": "ava", "xb": "di", "xc": "al"}


def cognate_root(lang: str, english: str) -> str:
    """The English word after `lang`'s spelling changes, without a final silent e."""
    w = english.lower()
    for a, b in _SOUND_CHANGES[lang]:
        w = w.replace(a, b)
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _build_lexicons() -> dict[str, dict[str, Entry]]:
    rng = random.Random(_LEXICON_SEED)
    lex: dict[str, dict[str, Entry]] = {}
    en: dict[str, Entry] = {}
    for c, (sg, pl) in OBJECT_NOUNS.items():
        en[c] = Entry(sg, pl)
    for c, sg in PERSON_NOUNS.items():
        en[c] = Entry(sg)
    for c, (past, base) in {**VERBS, **FACT_VERBS}.items():
        en[c] = Entry(past, base=base)
    for a in ADJECTIVES + TIME_ADVERBS:
        en[a] = Entry(a)
    for w in FUNCTION_WORDS:
        en[w] = Entry(w)
    en["opened_office"] = Entry("opened", base="open")
    lex["en"] = en

    # Hand-picked function words keep each language's grammar recognisable (they are not
    # cognates); content words are derived or generated. None of these collide with English words;
    # the SHARED particles are the English ones, added below.
    function = {
        "xa": {"the": "lo", "a": "un", "in": "di", "with": "kon", "for": "per", "at": "ad", "and": "e",
               "someone": "kualkuno", "he": "ilo", "she": "ela", "they": "lori",
               "who": "ki", "what": "ke", "where": "dove", "did": None, "is": "esta",
               "office": "ofiso", "opened_office": "apriva", "tomorrow": "domani"},
        "xb": {"the": "bu", "a": "bir", "in": "da", "with": "ile", "for": "icin", "at": "de", "and": "ve",
               "someone": "birisi", "he": "o", "she": "ona", "they": "onlar",
               "who": "kim", "what": "ne", "where": "nerede", "did": None, "is": "dir",
               "office": "ofisek", "opened_office": "acdi", "tomorrow": "yarin"},
        "xc": {"the": None, "a": None, "in": "v", "with": "s", "for": "dla", "at": "u", "and": "i",
               "someone": "ktoto", "he": "on", "she": "ona", "they": "oni",
               "who": "kto", "what": "cto", "where": "gde", "did": None, "is": "est",
               "office": "ofis", "opened_office": "otkryl", "tomorrow": "zavtra"},
    }
    classes = ([(c, "object", OBJECT_NOUNS[c][0]) for c in OBJECT_NOUNS]
               + [(c, "person", PERSON_NOUNS[c]) for c in PERSON_NOUNS]
               + [(c, "verb", en[c].base) for c in list(VERBS) + list(FACT_VERBS)]
               + [(a, "adj", a) for a in ADJECTIVES] + [(a, "time", a) for a in TIME_ADVERBS])
    for lang in ("xa", "xb", "xc"):
        taken = {w for w in function[lang].values() if w} | {e.form for e in en.values()}
        # which concepts are not cognate: a fixed sample per language (never the classic loanwords)
        candidates = [c for c, _, _ in classes if c not in COGNATES]
        foreign = set(rng.sample(candidates, round(NON_COGNATE_SHARE * len(classes))))
        d: dict[str, Entry] = {}
        for c, cls, english in classes:
            end, plural = (_VERB_PAST[lang], None) if cls == "verb" else _ENDINGS[lang][cls]

            def forms(root: str) -> list[str]:
                return [root + end] + ([root + plural] if plural is not None else [])

            root = cognate_root(lang, english)
            if c in foreign or any(f in taken for f in forms(root)):  # a generated word instead
                root = _make_words(lang, 1, rng, taken | {f[:-len(end)] for f in taken if end and f.endswith(end)})[0]
            fs = forms(root)
            taken.update(fs)
            d[c] = Entry(fs[0], fs[1] if len(fs) > 1 else None)
        for w, f in function[lang].items():
            d[w] = Entry(f) if f else Entry("")
        if lang == "xc":  # the Cyrillic language: transliterate its whole lexicon
            d = {c: Entry(to_cyrillic(e.form), to_cyrillic(e.plural) if e.plural else None) for c, e in d.items()}
        lex[lang] = d | {c: en[c] for c in SHARED}
    return lex


LEXICONS = _build_lexicons()


def word(lang: str, concept: str, plural: bool = False, base: bool = False) -> str:
    """The word for `concept`; `base`: an English verb's base form (xa, xb and xc verbs have one form)."""
    e = LEXICONS[lang][concept]
    return e.plural if plural else e.base if base and e.base else e.form
