"""Meaning samplers and task generators for the demo world.

Every label is computed from meanings (which event, which participants, negation, exclusive
adjective classes), never from surface strings, so what a model learns on English is about the
world and can carry over to the other lexicons. Names come from pool A in train and from pools
A+B in dev/test, so NER and QA cannot be solved by memorising training names.
"""

from __future__ import annotations

import copy
import random

from xrobust.data.synthetic_grammar import Tok, detokenize, render_clause, render_np, render_question
from xrobust.data.synthetic_lexicon import (
    ADJ_CLASS_OF, ADJ_CLASSES, ADJECTIVES, FACT_VERBS, FIRST_NAMES_A, FIRST_NAMES_B, NEGATIVE_VERBS,
    NEUTRAL_VERBS, OBJECT_NOUNS, ORGS_A, ORGS_B, PERSON_NOUNS, PLACES_A, PLACES_B, POSITIVE_VERBS,
    SURNAMES_A, SURNAMES_B, TIME_ADVERBS,
)

NLI_LABELS = ("entailment", "neutral", "contradiction")
SENTIMENT_LABELS = ("negative", "positive")
POS_TAGS = ("NOUN", "VERB", "ADJ", "DET", "ADP", "NUM", "PROPN", "PRON", "ADV", "CONJ", "PUNCT")
NER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")


class Pools:
    """Name pools for one split: train sees pool A only, dev/test A and B."""

    def __init__(self, split: str):
        heldout = split != "train"
        self.first = FIRST_NAMES_A + (FIRST_NAMES_B if heldout else ())
        self.surnames = SURNAMES_A + (SURNAMES_B if heldout else ())
        self.places = PLACES_A + (PLACES_B if heldout else ())
        self.orgs = ORGS_A + (ORGS_B if heldout else ())

    def person(self, rng: random.Random) -> dict:
        name = rng.choice(self.first)
        if rng.random() < 0.6:  # multi-word names exercise I-PER
            name += " " + rng.choice(self.surnames)
        return {"kind": "name", "name": name, "ner": "PER"}

    def place(self, rng: random.Random) -> dict:
        return {"kind": "name", "name": rng.choice(self.places), "ner": "LOC"}

    def org(self, rng: random.Random) -> dict:
        return {"kind": "name", "name": rng.choice(self.orgs), "ner": "ORG"}


def _other(rng: random.Random, options, current):
    return rng.choice([o for o in options if o != current])


def _distinct_person(rng, pools, avoid: set[str]) -> dict:
    while True:
        p = pools.person(rng)
        if p["name"].split()[0] not in avoid:
            return p


# ---- meaning samplers --------------------------------------------------------------------------
def sample_object(rng: random.Random, p_adj=0.6, p_num=0.2) -> dict:
    num = rng.randint(2, 9) if rng.random() < p_num else None
    return {"kind": "noun", "noun": rng.choice(list(OBJECT_NOUNS)), "det": rng.choice(("the", "a")),
            "adj": rng.choice(ADJECTIVES) if rng.random() < p_adj else None, "num": num}


def sample_agent(rng: random.Random, pools: Pools, p_name=0.65) -> dict:
    if rng.random() < p_name:
        return pools.person(rng)
    return {"kind": "noun", "noun": rng.choice(list(PERSON_NOUNS)), "det": "the", "adj": None, "num": None}


def sample_event(rng, pools, verbs=None, p_loc=0.5, p_with=0.25, p_time=0.3) -> dict:
    pps = []
    if rng.random() < p_loc:
        pps.append(("in", pools.place(rng), "loc"))
    if rng.random() < p_with:
        pps.append(("with", pools.person(rng), "with"))
    rng.shuffle(pps)
    return {"agent": sample_agent(rng, pools), "verb": rng.choice(verbs or list(NEUTRAL_VERBS)), "neg": False,
            "obj": sample_object(rng), "pps": pps, "time": rng.choice(TIME_ADVERBS) if rng.random() < p_time else None}


def sample_fact(rng, pools) -> dict:
    """Who works for / founded / joined which organisation, who lives in / visited which place."""
    kind = rng.choice(("work", "live", "visit", "meet", "found_org", "join", "office"))
    agent = pools.person(rng)
    loc = [("in", pools.place(rng), "loc")]
    if kind == "work":
        return {"agent": agent, "verb": "work", "obj": None, "pps": [("for", pools.org(rng), "org")] + loc}
    if kind == "live":
        return {"agent": agent, "verb": "live", "obj": None, "pps": loc}
    if kind == "visit":
        w = [("with", _distinct_person(rng, pools, {agent["name"].split()[0]}), "with")] if rng.random() < 0.4 else []
        return {"agent": agent, "verb": "visit", "obj": pools.place(rng), "pps": w}
    if kind == "meet":
        return {"agent": agent, "verb": "meet", "obj": _distinct_person(rng, pools, {agent["name"].split()[0]}), "pps": loc}
    if kind == "found_org":
        return {"agent": agent, "verb": "found_org", "obj": pools.org(rng), "pps": loc if rng.random() < 0.5 else []}
    if kind == "join":
        return {"agent": agent, "verb": "join", "obj": pools.org(rng), "pps": []}
    return {"agent": pools.org(rng), "verb": "opened_office", "pps": loc,
            "obj": {"kind": "noun", "noun": "office", "det": "a", "adj": None, "num": None}}


def sample_sentence(rng, pools) -> dict:
    return sample_event(rng, pools, verbs=list(NEUTRAL_VERBS + POSITIVE_VERBS + NEGATIVE_VERBS)) \
        if rng.random() < 0.6 else sample_fact(rng, pools)


def text(lang: str, toks: list[Tok]) -> str:
    return detokenize(toks)[0]


def key(meaning) -> str:
    return repr(meaning)


# ---- NLI -----------------------------------------------------------------------------------------
def _optional_parts(c: dict) -> list[str]:
    parts = [f"pp{i}" for i in range(len(c["pps"]))]
    if c.get("time"):
        parts.append("time")
    o = c.get("obj")
    if o and o["kind"] == "noun" and o.get("adj"):
        parts.append("adj")
    return parts


def _drop(c: dict, part: str) -> None:
    if part == "time":
        c["time"] = None
    elif part == "adj":
        c["obj"]["adj"] = None
    else:
        c["pps"][int(part[2:])] = None


def _cleanup(c: dict) -> dict:
    c["pps"] = [pp for pp in c["pps"] if pp is not None]
    return c


def make_nli_pair(rng: random.Random, pools: Pools, premise: dict, label: str, lexical: bool = True) -> dict | None:
    """Hypothesis meaning for `label`, or None when `premise` does not allow that edit.

    entailment: drop modifiers or generalise the agent to "someone" (premises are affirmative,
    so dropping information preserves truth). contradiction: negate, or replace a value of an
    exclusive slot (adjective within its class, place, number). neutral: add information the
    premise does not have, or change a participant. Each label may also drop other modifiers,
    so hypothesis length alone does not give the label away. With lexical=False only edits that
    involve negation, names, numbers and time adverbs are used (no adjective-class or noun
    knowledge), which keeps the target task learnable by a tiny encoder in a few seconds.
    """
    h = copy.deepcopy(premise)
    optional = _optional_parts(h)
    edits = []
    if label == "entailment":
        if optional and rng.random() < 0.75:
            for part in rng.sample(optional, rng.randint(1, len(optional))):
                _drop(h, part)
            edits.append("drop")
        if not edits or rng.random() < 0.3:
            h["agent"] = {"kind": "someone"}
            edits.append("someone")
    else:
        choices = []
        if label == "contradiction":
            choices.append("negate")
            if lexical and h.get("obj") and h["obj"]["kind"] == "noun" and h["obj"].get("adj"):
                choices.append("swap_adj")
            if any(r == "loc" for _, _, r in h["pps"]):
                choices.append("swap_loc")
            if h.get("obj") and h["obj"]["kind"] == "noun" and h["obj"].get("num"):
                choices.append("swap_num")
        else:
            o = h.get("obj")
            if lexical and o and o["kind"] == "noun" and not o.get("adj") and o["noun"] in OBJECT_NOUNS:
                choices.append("add_adj")
            if not any(r == "loc" for _, _, r in h["pps"]):
                choices.append("add_loc")
            if not h.get("time"):
                choices.append("add_time")
            if h["agent"]["kind"] == "name" and h["agent"]["ner"] == "PER":
                choices.append("other_agent")
            if lexical and o and o["kind"] == "noun" and o["noun"] in OBJECT_NOUNS:
                choices.append("other_obj")
        if not choices:
            return None
        edit = rng.choice(choices)
        # optionally drop an unrelated modifier first (never the slot the edit touches)
        protect = {"swap_adj": "adj", "swap_loc": "loc"}.get(edit)
        droppable = [p for p in optional if not (p == "adj" and protect == "adj") and not (
            p.startswith("pp") and protect == "loc" and h["pps"][int(p[2:])][2] == "loc")]
        if droppable and rng.random() < 0.4:
            _drop(h, rng.choice(droppable))
        _cleanup(h)
        o = h.get("obj")
        if edit == "negate":
            h["neg"] = True
        elif edit == "swap_adj":
            o["adj"] = _other(rng, ADJ_CLASSES[ADJ_CLASS_OF[o["adj"]]], o["adj"])
        elif edit == "swap_loc":
            h["pps"] = [(p, {**np, "name": _other(rng, pools.places, np["name"])} if r == "loc" else np, r)
                        for p, np, r in h["pps"]]
        elif edit == "swap_num":
            o["num"] = _other(rng, range(2, 10), o["num"])
        elif edit == "add_adj":
            o["adj"] = rng.choice(ADJECTIVES)
        elif edit == "add_loc":
            h["pps"].append(("in", pools.place(rng), "loc"))
        elif edit == "add_time":
            h["time"] = rng.choice(TIME_ADVERBS)
        elif edit == "other_agent":
            h["agent"] = _distinct_person(rng, pools, {h["agent"]["name"].split()[0]})
        elif edit == "other_obj":
            o["noun"] = _other(rng, list(OBJECT_NOUNS), o["noun"])
    return _cleanup(h)


def sample_nli(rng, pools, facts: bool, lexical: bool = True) -> tuple[dict, dict, str]:
    label = NLI_LABELS[rng.randrange(3)]
    while True:
        premise = sample_fact(rng, pools) if facts else sample_event(rng, pools)
        premise.setdefault("time", None)
        premise["neg"] = False
        hyp = make_nli_pair(rng, pools, premise, label, lexical)
        if hyp is not None and hyp != premise:
            return premise, hyp, label


def nli_row(lang: str, item) -> dict:
    premise, hyp, label = item
    return {"text_a": text(lang, render_clause(lang, premise)), "text_b": text(lang, render_clause(lang, hyp)),
            "label": label}


# ---- sentiment -----------------------------------------------------------------------------------
def sample_sentiment(rng, pools):
    c = sample_event(rng, pools, verbs=list(POSITIVE_VERBS + NEGATIVE_VERBS))
    c["neg"] = rng.random() < 0.35
    positive = (c["verb"] in POSITIVE_VERBS) != c["neg"]  # negation flips the attitude
    return c, SENTIMENT_LABELS[int(positive)]


def sentiment_row(lang: str, item) -> dict:
    c, label = item
    return {"text_a": text(lang, render_clause(lang, c)), "text_b": None, "label": label}


# ---- contexts for QA / multiple choice -------------------------------------------------------------
def sample_context(rng, pools, n: int, facts: float) -> list[dict]:
    """`n` clauses with pairwise distinct agents, verbs, places and objects, so a question naming
    one clause's verb and other arguments has exactly one answer."""
    while True:
        clauses = []
        for _ in range(n):
            if rng.random() < facts:
                c = sample_fact(rng, pools)
                c.setdefault("time", None)
                c["neg"] = False
            else:
                c = sample_event(rng, pools, p_loc=0.8, p_time=0.0)
            clauses.append(c)
        agents = [c["agent"].get("name") or c["agent"].get("noun") for c in clauses]
        verbs = [c["verb"] for c in clauses]
        locs = [np["name"] for c in clauses for _, np, r in c["pps"] if r in ("loc", "with", "org")]
        names = [c["obj"].get("name") for c in clauses if c.get("obj") and c["obj"]["kind"] == "name"]
        firsts = [a.split()[0] for a in agents + names]
        if len(set(verbs)) == n and len(set(firsts)) == len(firsts) and len(set(locs + names)) == len(locs + names):
            return clauses


def _askable(c: dict) -> list[str]:
    roles = ["agent"]
    if c.get("obj"):
        roles.append("obj")
    if any(r == "loc" for _, _, r in c["pps"]):
        roles.append("loc")
    return roles


def _answer_tokens(toks: list[Tok], role: str) -> tuple[int, int]:
    idx = [i for i, t in enumerate(toks) if t.role == role and t.pos != "DET"]  # answers omit articles
    return idx[0], idx[-1]


def sample_qa(rng, pools, facts: float):
    clauses = sample_context(rng, pools, rng.randint(2, 4), facts)
    target = rng.randrange(len(clauses))
    role = rng.choice(_askable(clauses[target]))
    return clauses, target, role


def qa_row(lang: str, item) -> dict:
    clauses, target, role = item
    toks, answer = [], None
    for i, c in enumerate(clauses):
        ct = render_clause(lang, c)
        if i == target:
            a, b = _answer_tokens(ct, role)
            answer = (len(toks) + a, len(toks) + b)
        toks += ct
    context, spans = detokenize(toks)
    start, end = spans[answer[0]][0], spans[answer[1]][1]
    return {"question": text(lang, render_question(lang, clauses[target], role)), "context": context,
            "answers": {"text": [context[start:end]], "answer_start": [start]}}


def sample_mc(rng, pools):
    clauses = sample_context(rng, pools, rng.randint(2, 3), facts=0.0)
    target = rng.randrange(len(clauses))
    role = rng.choice(_askable(clauses[target]))
    answer = clauses[target]["agent" if role == "agent" else "obj"] if role != "loc" else next(
        np for _, np, r in clauses[target]["pps"] if r == "loc")
    # distractors: same-type fillers of the other clauses first (must read to tell), then random
    pool = []
    for c in clauses:
        cand = c["agent"] if role == "agent" else c.get("obj") if role == "obj" else next(
            (np for _, np, r in c["pps"] if r == "loc"), None)
        if cand is not None and cand != answer:
            pool.append(cand)
    while len(pool) < 3:
        cand = (sample_agent(rng, pools) if role == "agent" else sample_object(rng) if role == "obj"
                else pools.place(rng))
        if cand != answer and cand not in pool:
            pool.append(cand)
    choices = pool[:3]
    label = rng.randrange(4)
    choices.insert(label, answer)
    return clauses, target, role, choices, label


def mc_row(lang: str, item) -> dict:
    clauses, target, role, choices, label = item
    context = " ".join(text(lang, render_clause(lang, c)) for c in clauses)
    question = text(lang, render_question(lang, clauses[target], role))
    return {"prompt": context + " " + question, "choices": [text(lang, render_np(lang, ch)) for ch in choices],
            "label": label}


# ---- tagging ---------------------------------------------------------------------------------------
def sample_tagging(rng, pools, questions: bool):
    c = sample_sentence(rng, pools)
    c.setdefault("time", None)
    if "neg" not in c:
        c["neg"] = rng.random() < 0.15
    if rng.random() < 0.25:  # coordinated agents: "Anna and the teacher bought ..."
        c["agent"] = {"kind": "coord", "parts": [c["agent"], sample_agent(rng, pools)]}
    ask = rng.choice(_askable(c)) if questions and c["agent"]["kind"] != "coord" and rng.random() < 0.3 else None
    return c, ask


def _render_tagged(lang: str, item) -> list[Tok]:
    c, ask = item
    if c["agent"]["kind"] == "coord":
        a, b = c["agent"]["parts"]
        from xrobust.data.synthetic_grammar import _w  # coordination is only used for tagging

        agent_toks = render_np(lang, a, "agent") + _w(lang, "and", "CONJ") + render_np(lang, b, "agent")
        toks = render_clause(lang, dict(c, agent={"kind": "pron", "pron": "they"}))
        i = next(k for k, t in enumerate(toks) if t.role == "agent")
        return toks[:i] + agent_toks + toks[i + 1:]
    return render_question(lang, c, ask) if ask else render_clause(lang, c)


def pos_row(lang: str, item) -> dict:
    toks = _render_tagged(lang, item)
    return {"tokens": [t.text for t in toks], "tags": [t.pos for t in toks]}


def sample_ner(rng, pools):
    c = sample_fact(rng, pools) if rng.random() < 0.7 else sample_event(rng, pools, p_loc=0.7, p_with=0.4)
    c.setdefault("time", None)
    c["neg"] = False
    return c, None


def ner_row(lang: str, item) -> dict:
    toks = _render_tagged(lang, item)
    return {"tokens": [t.text for t in toks], "tags": [t.ner for t in toks]}


# ---- retrieval -------------------------------------------------------------------------------------
def sample_bitext(rng, pools):
    c = sample_sentence(rng, pools)
    c.setdefault("time", None)
    c.setdefault("neg", rng.random() < 0.15)
    return c


def bitext_row(lang: str, c) -> dict:
    return {"source": text(lang, render_clause(lang, c)), "target": text("en", render_clause("en", c))}
