"""Metrics against hand-computed expectations (seqeval quirks, SQuAD and MLQA normalization)."""

import pytest

from xrobust.errors import XRobustError
from xrobust.evaluation import metrics as M

approx = pytest.approx


# ------------------------------------------------------------------ accuracy / BUCC / Tatoeba

def test_accuracy():
    assert M.accuracy(["1", "0", "2", "2"], ["1", "1", "2", "0"]) == {"accuracy": 50.0}


def test_accuracy_errors():
    with pytest.raises(XRobustError, match="3 predictions for 2"):
        M.accuracy(["a", "b"], ["a", "b", "c"])
    with pytest.raises(XRobustError, match="no examples"):
        M.accuracy([], [])


def test_tatoeba_accuracy_compares_as_strings():
    assert M.tatoeba_accuracy([0, 1, 2, 3], ["0", "1", " 2", 0]) == {"accuracy": 75.0}


def test_bucc_prf():
    gold = ["de-1\ten-1", "de-2\ten-2", "de-3\ten-3"]
    r = M.bucc_prf(gold, ["de-1\ten-1", "de-2\ten-9"])
    # 1 correct of 2 predicted, 3 gold: P=1/2, R=1/3, F1=2PR/(P+R)=0.4
    assert r == {"f1": approx(40.0), "precision": approx(50.0), "recall": approx(100 / 3)}
    # predictions are a set: duplicates count once; tuples and lines are interchangeable
    assert M.bucc_prf(gold, [("de-1", "en-1"), "de-1\ten-1"])["precision"] == 100.0
    assert M.bucc_prf(gold, []) == {"f1": 0, "precision": 0, "recall": 0}


# ------------------------------------------------------------------------------- seqeval

def test_seqeval_panx_entities():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert M.seqeval_prf(gold, pred) == {"f1": 50.0, "precision": 50.0, "recall": 50.0}
    # a sentence boundary ends an entity: gold B-PER | I-PER holds two PER entities
    r = M.seqeval_prf([["B-PER"], ["I-PER"]], [["B-PER"], ["O"]])
    assert r == {"f1": approx(200 / 3), "precision": 100.0, "recall": 50.0}


def test_seqeval_udpos_runs_of_same_tag_merge():
    # NOUN NOUN is one chunk (type "OUN", tokens 0-1); per-token accuracy would be 2/3 but no
    # chunk of the prediction (NOUN | VERB VERB) matches the gold chunks.
    r = M.seqeval_prf([["NOUN", "NOUN", "VERB"]], [["NOUN", "VERB", "VERB"]])
    assert r == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert M.seqeval_prf([["NOUN", "NOUN", "VERB"]], [["NOUN", "NOUN", "VERB"]])["f1"] == 100.0


def test_seqeval_udpos_sconj_cconj_share_a_type():
    # gold SCONJ CCONJ -> chunks (CONJ,0,0) [S = single] and (CONJ,0,1) [C continues, no restart];
    # pred CCONJ CCONJ -> (CONJ,0,1). TP=1, P=1, R=1/2.
    r = M.seqeval_prf([["SCONJ", "CCONJ"]], [["CCONJ", "CCONJ"]])
    assert r == {"f1": approx(200 / 3), "precision": 100.0, "recall": 50.0}


def test_seqeval_sentence_length_mismatch():
    with pytest.raises(XRobustError, match="sentence 1: 1 predicted tags for 2 gold"):
        M.seqeval_prf([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(XRobustError, match="1 predicted sentences for 2"):
        M.seqeval_prf([["O"], ["O"]], [["O"]])


# -------------------------------------------------------------------------------- SQuAD

def test_squad_normalize():
    assert M.squad_normalize("The  Cat's hat!") == "cats hat"
    assert M.squad_normalize("theater a") == "theater"
    # only ASCII punctuation is dropped by the SQuAD script
    assert M.squad_normalize("«Hola»") == "«hola»"


def test_squad_em_f1_pairs():
    assert M.squad_f1("the cat sat", "a cat sat down") == approx(0.8)  # P=1, R=2/3
    assert M.squad_exact_match("Paris.", "paris")
    # punctuation-only / empty answers normalise to "": EM 1, F1 0 (as the script)
    assert M.squad_exact_match("!!!", "...") and M.squad_f1("!!!", "...") == 0
    assert not M.squad_exact_match("", "x") and M.squad_f1("", "x") == 0


def test_squad_scores_with_unanswered():
    gold = {"q1": ["Paris"], "q2": ["the Eiffel Tower", "Eiffel"], "q3": ["x"]}
    r = M.squad_scores(gold, {"q1": "paris.", "q2": "tower"})
    # q1: EM 1 F1 1; q2: max(F1 vs "eiffel tower"=2/3, vs "eiffel"=0); q3 unanswered = 0
    assert r == {"exact_match": approx(100 / 3), "f1": approx(100 * (1 + 2 / 3) / 3)}


def test_qa_empty_gold_answers_is_an_error_only_when_answered():
    assert M.squad_scores([("q", [])], {})["f1"] == 0
    with pytest.raises(XRobustError, match="no gold answers"):
        M.squad_scores([("q", [])], {"q": "x"})


# --------------------------------------------------------------------------------- MLQA

@pytest.mark.parametrize("lang,text,expected", [
    ("en", "The Answer, a test!", "answer test"),
    ("en", "“Hello” theater", "hello theater"),          # Unicode quotes are punctuation
    ("en", "$100 €5", "100 €5"),                          # $ is in string.punctuation, € is not
    ("es", "El perro y la casa.", "perro y casa"),
    ("es", "Unos gatos, unas casas", "gatos casas"),
    ("de", "Der Hund und die Katze; das Haus eines Mannes", "hund und katze haus mannes"),
    ("de", "Einem einen Dieb", "dieb"),
    ("vi", "Những con mèo của tôi là cái chiếc", "con mèo tôi"),
    ("ar", "الكتاب، جميل", "كتاب جميل"),                  # al- prefix and Arabic comma
    ("ar", "مال", "م"),                                    # every "ال" goes, as in the MLQA script
    ("hi", "a भारत।", "a भारत"),                            # no articles; danda is punctuation
    ("zh", "北京是中国的首都。", "北 京 是 中 国 的 首 都"),
    ("zh", "The iPhone手机", "the iphone 手 机"),           # no article removal in zh
])
def test_mlqa_normalize(lang, text, expected):
    assert M.mlqa_normalize(text, lang) == expected


def test_mlqa_chinese_tokenization():
    assert M.mlqa_tokenize("ab北京 cd", "zh") == ["ab", "北", "京", "cd"]
    assert M.mlqa_tokenize("x,y", "zh") == ["x", ",", "y"]
    # only U+4E00..U+9FA5 is split (the script's range), U+9FA6 stays inside a token
    assert M.mlqa_tokenize("x\u9fa6\u9fa6y\u4e00\u9fa5", "zh") == ["x\u9fa6\u9fa6y", "\u4e00", "\u9fa5"]
    assert M.mlqa_exact_match("北 京", "北京", "zh")
    assert M.mlqa_f1("北京", "北京市", "zh") == approx(0.8)  # P=1, R=2/3


def test_mlqa_scores_and_unknown_language():
    gold = [("a", ["北京市中心"]), ("b", ["上海"])]
    r = M.mlqa_scores(gold, {"a": "北京", "b": "上海。"}, "zh")
    # a: P=1, R=2/5 -> F1=4/7; b: exact
    assert r == {"exact_match": 50.0, "f1": approx(100 * (4 / 7 + 1) / 2)}
    with pytest.raises(XRobustError, match="unknown language 'fr'"):
        M.mlqa_normalize("x", "fr")
    with pytest.raises(XRobustError, match="unknown language 'fr'"):
        M.mlqa_scores(gold, {}, "fr")


# --------------------------------------------------------------------------- aggregation

def test_aggregate_task_qa_and_tagging():
    qa = M.aggregate_task("xquad", {"en": {"exact_match": 50.0, "f1": 70.0}, "de": {"exact_match": 30.0, "f1": 40.0}})
    assert qa["exact_match"] == {"en": 50.0, "de": 30.0}
    assert qa["avg_exact_match"] == 40.0 and qa["avg_f1"] == 55.0 and qa["avg_metric"] == 47.5
    tag = M.aggregate_task("panx", {"en": {"f1": 80.0, "precision": 90.0, "recall": 70.0}})
    assert tag["avg_metric"] == 80.0 and list(tag) == ["f1", "precision", "recall", "avg_f1",
                                                       "avg_precision", "avg_recall", "avg_metric"]
    assert M.aggregate_task("xnli", {"en": {"accuracy": 60.0}})["avg_metric"] == 60.0


def test_benchmark_scores_groups_and_all_task():
    detailed = {t: {"avg_metric": float(i * 10)} for i, t in enumerate(M.TASK2LANGS)}
    out = M.benchmark_scores(detailed)
    # pawsx 0, xnli 10, panx 20, udpos 30, bucc 40, tatoeba 50, xquad 60, mlqa 70, tydiqa 80
    assert out == {"all_task": 40.0, "classification": 5.0, "tagging": 25.0, "qa": 70.0, "retrieval": 45.0}
    partial = M.benchmark_scores({"pawsx": {"avg_metric": 1.0}, "xnli": {"avg_metric": 3.0}})
    assert partial == {"classification": 2.0}


def test_mlqa_normalize_matches_literal_restatement_on_random_text():
    """Independent literal re-statement of the MLQA script's normalization (its regexes, its
    full-range PUNCT set) against ours on random mixed-script strings."""
    import random
    import re
    import string
    import sys
    import unicodedata

    punct = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
    punct |= set(string.punctuation)
    articles = {"en": r"\b(a|an|the)\b", "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
                "vi": r"\b(của|là|cái|chiếc|những)\b",
                "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"}

    def literal(s, lang):
        s = "".join(ch for ch in s.lower() if ch not in punct)
        if lang == "ar":
            s = re.sub("\\sال^|ال", " ", s)
        elif lang in articles:
            s = re.sub(articles[lang], " ", s)
        if lang == "zh":
            toks, tmp = [], ""
            for ch in s:
                if re.search(r"[\u4e00-\u9fa5]", ch) or ch in punct:
                    if tmp:
                        toks.extend(tmp.split())
                        tmp = ""
                    toks.append(ch)
                else:
                    tmp += ch
            toks.extend(tmp.split())
        else:
            toks = s.split()
        return " ".join(t for t in toks if t.strip() != "")

    pool = list("aAnNtThe lsdiuc ") + ["the", "a ", "la ", "der ", "của ", "ال", "中", "国", "\u9fa6", "。", "،",
                                       "!", "$", "€", "—", "\u00a0", "İ", "ß", "\t", "'", "é", "ạ"]
    rng = random.Random(0)
    for _ in range(400):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(0, 20)))
        for lang in M.MLQA_LANGS:
            assert M.mlqa_normalize(s, lang) == literal(s, lang), (s, lang)
