"""Meanings -> tokens per language (word order, articles, adpositions, questions).

A clause meaning is a dict:
    {"agent": NP, "verb": concept, "neg": bool, "obj": NP | None,
     "pps": [(prep_concept, NP, role), ...], "time": adverb concept | None,
     "tense": "past" (the default) | "future"}
The future is a particle before the negation and the verb ("Nina will never buy a cup"); English
verbs take their base form after it, xa, xb and xc verbs keep their one form.
An NP is one of
    {"kind": "name", "name": "Anna Berg", "ner": "PER" | "LOC" | "ORG"}
    {"kind": "noun", "noun": concept, "adj": concept | None, "num": int | None, "det": "the" | "a" | None}
    {"kind": "pron", "pron": "he" | "she" | "they"}      {"kind": "someone"}
Every rendered token keeps its concept so code-switching can swap the lexicon word by word.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xrobust.demo.lexicon import LEXICONS, PERSON_NOUNS, word

PUNCT = {".", "?", ","}


@dataclass(frozen=True)
class Tok:
    text: str
    pos: str
    ner: str = "O"
    role: str = ""  # semantic role of the phrase the token belongs to (QA answers, MC choices)
    concept: str = ""  # lexicon key; "" for names, digits and punctuation (identical everywhere)
    plural: bool = False
    base: bool = False  # a verb after the future particle (English: base form)


def _w(lang: str, concept: str, pos: str, role: str = "", plural: bool = False, base: bool = False) -> list[Tok]:
    form = word(lang, concept, plural, base)
    return [Tok(form, pos, "O", role, concept, plural, base)] if form else []  # xc has no articles


def render_np(lang: str, np: dict, role: str = "") -> list[Tok]:
    kind = np["kind"]
    if kind == "name":
        parts = np["name"].split()
        return [Tok(p, "PROPN", ("B-" if i == 0 else "I-") + np["ner"], role) for i, p in enumerate(parts)]
    if kind == "pron":
        return _w(lang, np["pron"], "PRON", role)
    if kind == "someone":
        return _w(lang, "someone", "PRON", role)
    plural = np.get("num") is not None
    det = _w(lang, np["det"], "DET", role) if np.get("det") and not plural else []
    num = [Tok(str(np["num"]), "NUM", "O", role)] if plural else []
    adj = _w(lang, np["adj"], "ADJ", role) if np.get("adj") else []
    noun = _w(lang, np["noun"], "NOUN", role, plural)
    if lang == "xb":  # adjective after the noun
        return det + num + noun + adj
    return det + num + adj + noun


def render_pp(lang: str, prep: str, np: dict, role: str) -> list[Tok]:
    body = render_np(lang, np, role)
    adp = _w(lang, prep, "ADP")
    return body + adp if lang == "xb" else adp + body  # xb has postpositions


def _english_articles(toks: list[Tok]) -> list[Tok]:
    out = list(toks)
    for i in range(len(out) - 1):
        if out[i].concept == "a" and out[i + 1].text[:1].lower() in "aeiou":
            out[i] = replace(out[i], text="an")
    return out


def render_clause(lang: str, c: dict, final: str = ".") -> list[Tok]:
    agent = render_np(lang, c["agent"], "agent")
    future = c.get("tense", "past") == "future"
    aux = (_w(lang, "will", "VERB") if future else []) + (_w(lang, "never", "ADV") if c.get("neg") else [])
    verb = _w(lang, c["verb"], "VERB", base=future)
    obj = render_np(lang, c["obj"], "obj") if c.get("obj") else []
    pps = [t for prep, np, role in c.get("pps", ()) for t in render_pp(lang, prep, np, role)]
    time = _w(lang, c["time"], "ADV", "time") if c.get("time") else []
    end = [Tok(final, "PUNCT")] if final else []
    if lang == "en":
        toks = agent + aux + verb + obj + pps + time
    elif lang == "xa":
        toks = time + agent + aux + verb + obj + pps
    elif lang == "xb":
        toks = agent + pps + obj + aux + verb + time
    else:
        toks = agent + aux + verb + obj + pps + time
    toks = toks + end
    return _english_articles(toks) if lang == "en" else toks


def wh_concept(c: dict, role: str) -> str:
    if role == "loc":
        return "where"
    np = c["agent"] if role == "agent" else c["obj"] if role == "obj" else next(
        np for _, np, r in c["pps"] if r == role)
    person = np["kind"] in ("pron", "someone") or (np["kind"] == "name" and np["ner"] == "PER") or (
        np["kind"] == "noun" and np["noun"] in PERSON_NOUNS)
    return "who" if person else "what"


def render_question(lang: str, c: dict, role: str) -> list[Tok]:
    """Ask for the phrase with `role` ("agent", "obj" or "loc"): wh-fronting except in xb (in situ)."""
    wh = _w(lang, wh_concept(c, role), "PRON" if role != "loc" else "ADV")
    q = dict(c, time=None, neg=False, tense="past")
    pps = [(p, np, r) for p, np, r in c.get("pps", ()) if r != role]
    q["pps"] = pps
    if lang == "xb":
        agent = wh if role == "agent" else render_np(lang, c["agent"], "agent")
        obj = wh if role == "obj" else (render_np(lang, c["obj"], "obj") if c.get("obj") else [])
        loc = wh if role == "loc" else []
        pp_toks = [t for p, np, r in pps for t in render_pp(lang, p, np, r)]
        return agent + pp_toks + loc + obj + _w(lang, c["verb"], "VERB") + [Tok("?", "PUNCT")]
    if role == "agent":
        q["agent"] = None
        body = [t for t in render_clause(lang, dict(q, agent={"kind": "someone"}), final="")]
        body = [t for t in body if t.role != "agent"]
        toks = wh + body
    else:
        if role == "obj":
            q["obj"] = None
        body = render_clause(lang, q, final="")
        if lang == "en":  # do-support: "What did Anna buy ?"
            verb_i = next(i for i, t in enumerate(body) if t.pos == "VERB")
            base = LEXICONS["en"][c["verb"]].base or body[verb_i].text
            agent = [t for t in body[:verb_i] if t.role == "agent"]
            body = [Tok("did", "VERB", concept="did")] + agent + [replace(body[verb_i], text=base)] + body[verb_i + 1:]
        toks = wh + body
    toks = toks + [Tok("?", "PUNCT")]
    return _english_articles(toks) if lang == "en" else toks


def detokenize(toks: list[Tok]) -> tuple[str, list[tuple[int, int]]]:
    """Join with spaces, punctuation attached to the previous word; returns text and char spans."""
    text, spans = "", []
    for i, t in enumerate(toks):
        if i and t.text not in PUNCT:
            text += " "
        start = len(text)
        text += t.text
        spans.append((start, len(text)))
    return text, spans


def code_switch(toks: list[Tok], choose_lang) -> list[Tok]:
    """Swap each lexicon word for the same concept in `choose_lang()`'s lexicon (MLM corpus only)."""
    out = []
    for t in toks:
        if t.concept and t.concept not in ("did",):
            other = choose_lang()
            if other is not None:
                form = word(other, t.concept, t.plural, t.base)
                if form:
                    t = replace(t, text=form)
        out.append(t)
    return out
