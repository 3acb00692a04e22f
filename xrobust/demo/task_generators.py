"""Meaning samplers and task generators for the demo world.

Every label is computed from meanings (which event, which participants, negation, exclusive
adjective classes), never from surface strings, so what a model learns on English is about the
world and can carry over to the other lexicons. Names come from pool A in train and from pools
A+B in dev/test, so NER and QA cannot be solved by memorising training names.
"""

from __future__ import annotations

import copy
import random

from xrobust.demo.grammar import Tok, detokenize, render_clause, render_np, render_question
from xrobust.demo.lexicon import (
    ADJECTIVES, FIRST_NAMES_A, FIRST_NAMES_B, NEGATIVE_VERBS,
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

    def person(self, rng: random.Random, p_surname: float = 0.6) -> dict:
        name = rng.choice(self.first)
        if rng.random() < p_surname:  # multi-word names exercise I-PER
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
# A sentence asserts an event with the slots it states ("Nina bought a cup in Kaldur") or, negated,
# that no such event happened ("Nina never bought a cup in Kaldur"); in the future tense, that it
# will (or will never) happen. A pair is about one event or about two (`nli_label`): what happened
# and what will happen are two events, and so are events with another agent, action or object; two
# events are compatible whatever each side says (neutral). About one event, two sentences of the
# same polarity entail and two of opposite polarity contradict, because the sampler lets only the
# side that may state more do so. Each sentence alone says nothing about the label: the
# hypothesis, its polarity and tense included, is drawn before the label and independently of it,
# and so are the premise's polarity, tense and what it states.
_OPTIONAL = ("adj", "loc", "with", "org", "time")  # slots a sentence may leave out
_CORE = ("agent", "obj", "num")  # with the verb: which event a sentence is about
_REQUIRED = {"live": "loc", "work": "org"}  # "Nina lived." or "Nina worked." would say too little
TENSES = ("past", "future")
P_PREMISE_SLOT_CHANGE = 0.5  # how often the premise states one slot more (affirmed) or less (negated)


def _statements(c: dict) -> dict:
    """What a clause states, slot by slot: agent, obj (noun concept or name), num, adj, one entry
    per adpositional role (loc, with, org) and time. The verb is compared separately."""
    out = {"agent": c["agent"]}
    o = c.get("obj")
    if o is not None:
        out["obj"] = o["noun"] if o["kind"] == "noun" else o["name"]
        if o.get("num") is not None:
            out["num"] = o["num"]
        if o.get("adj"):
            out["adj"] = o["adj"]
    for _, np, role in c["pps"]:
        out[role] = np["name"]
    if c.get("time"):
        out["time"] = c["time"]
    return out


def nli_label(premise: dict, hyp: dict) -> str:
    """The label of a pair of clauses.

    Different tense, agent, verb or object: two events, neither excludes the other, neutral. One event
    (its other slots must not clash): both affirmative, entailment if the premise states everything
    the hypothesis does; both negated, entailment if the hypothesis states everything the premise
    does ("never bought a cup" excludes "bought a cup in Kaldur"); opposite polarity, contradiction
    if the affirmative side states everything the negated side does (its event is one the other
    denies). Otherwise neutral."""
    p, h = _statements(premise), _statements(hyp)
    if premise["verb"] != hyp["verb"] or any(p.get(k) != h.get(k) for k in _CORE) or _tense(premise) != _tense(hyp):
        return "neutral"
    if any(p[k] != v for k, v in h.items() if k in p):
        raise ValueError("nli_label: premise and hypothesis about one event state different values of a slot")
    p_in_h, h_in_p = set(p) <= set(h), set(h) <= set(p)
    if bool(premise.get("neg")) == bool(hyp.get("neg")):
        return "entailment" if (p_in_h if premise.get("neg") else h_in_p) else "neutral"
    return "contradiction" if (p_in_h if premise.get("neg") else h_in_p) else "neutral"


def _tense(c: dict) -> str:
    return c.get("tense", "past")


def set_tense(c: dict, tense: str) -> dict:
    """`c` in `tense` (past or future), its time adverb one that fits ("yesterday" -> "tomorrow")."""
    if tense == "future" and c.get("time") == "yesterday":
        c["time"] = "tomorrow"
    c["tense"] = tense
    return c


def _view(c: dict, keep: set[str], neg: bool, tense: str = "past") -> dict:
    """`c` with only the optional slots in `keep` (and the verb's required one), negated or not,
    in `tense`."""
    v = copy.deepcopy(c)
    keep = set(keep) | {_REQUIRED.get(c["verb"])}
    v["pps"] = [pp for pp in v["pps"] if pp[2] in keep]
    if "time" not in keep:
        v["time"] = None
    if v.get("obj") and v["obj"]["kind"] == "noun" and "adj" not in keep:
        v["obj"]["adj"] = None
    v["neg"] = neg
    return set_tense(v, tense)


def _optional(c: dict) -> list[str]:
    return [slot for slot in _OPTIONAL if slot in _statements(c) and slot != _REQUIRED.get(c["verb"])]


def _nli_event(rng: random.Random, pools: Pools, facts: bool) -> dict:
    """An affirmative event with most optional slots filled, for a pair to describe in part."""
    if facts:
        c = sample_fact(rng, pools)
        if c["agent"]["ner"] == "PER":  # full names: few facts repeat, so few pairs are drawn twice
            c["agent"] = pools.person(rng, p_surname=1.0)
        roles = {r for _, _, r in c["pps"]}
        if "loc" not in roles and c["verb"] != "visit" and rng.random() < 0.8:
            c["pps"].append(("in", pools.place(rng), "loc"))
        if "with" not in roles and c["verb"] != "meet" and c["agent"]["ner"] == "PER" and rng.random() < 0.5:
            c["pps"].append(("with", _distinct_person(rng, pools, {c["agent"]["name"].split()[0]}), "with"))
        c["time"] = rng.choice(TIME_ADVERBS) if rng.random() < 0.6 else None
    else:
        c = sample_event(rng, pools, p_loc=0.7, p_with=0.4, p_time=0.6)
    c["neg"] = False
    return c


def sample_nli(rng: random.Random, pools: Pools, facts: bool) -> tuple[dict, dict, str]:
    """(premise, hypothesis, label). An event is drawn; the hypothesis states a random part of it
    (each optional slot with probability 1/2), affirmed or negated with probability 1/2, in the
    past or the future with probability 1/2. Then, independently of the hypothesis, the premise is
    affirmed or negated with probability 1/2 and is in the hypothesis's tense (about the same
    event, probability 2/3) or in the other (about another event, 1/3). It
    states the hypothesis's slots, and with probability `P_PREMISE_SLOT_CHANGE` one more if it is
    affirmed or one less if it is negated: so about one event, the same polarity is always
    entailment and opposite polarity always contradiction (`nli_label`), and the three labels are
    equally likely for every hypothesis and for every premise polarity and length."""
    while True:
        event = _nli_event(rng, pools, facts)
        optional = _optional(event)
        keep = {slot for slot in optional if rng.random() < 0.5}
        if not keep:  # a hypothesis states at least one optional slot, so a premise can state one less
            continue
        spare = [slot for slot in optional if slot not in keep]
        h_tense = rng.choice(TENSES)
        hyp = _view(event, keep, rng.random() < 0.5, h_tense)
        p_neg = rng.random() < 0.5
        keep_p = set(keep)
        if rng.random() < P_PREMISE_SLOT_CHANGE:
            if p_neg:
                keep_p.discard(rng.choice(sorted(keep)))
            elif spare:
                keep_p.add(rng.choice(spare))
        p_tense = _other(rng, TENSES, h_tense) if rng.random() < 1 / 3 else h_tense
        premise = _view(event, keep_p, p_neg, p_tense)
        return premise, hyp, nli_label(premise, hyp)


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
        from xrobust.demo.grammar import _w  # coordination is only used for tagging

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
def sample_bitext(rng, pools, p_negated: float | None = None, p_future: float = 0.0):
    """A sentence meaning for retrieval and the MLM corpus; `p_negated` sets how often it is
    negated (by default only some facts are), `p_future` how often it is in the future tense."""
    c = sample_sentence(rng, pools)
    c.setdefault("time", None)
    c.setdefault("neg", rng.random() < 0.15)
    if p_negated is not None:
        c["neg"] = rng.random() < p_negated
    if p_future and rng.random() < p_future:
        set_tense(c, "future")
    return c


def bitext_row(lang: str, c) -> dict:
    return {"source": text(lang, render_clause(lang, c)), "target": text("en", render_clause("en", c))}
