"""Retrieval: blockwise knn, Tatoeba, BUCC margin mining and dev-only threshold tuning."""

import numpy as np
import pytest
import torch

from xrobust.errors import XRobustError
from xrobust.evaluation import retrieval as R

approx = pytest.approx


def _rand(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _cos(x, y):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(np.float64) @ y.astype(np.float64).T


def test_knn_blockwise_matches_brute_force():
    x, y = _rand(37, 16, 0), _rand(53, 16, 1)
    sims, inds = R.knn(x, y, 4, backend="torch", query_block=5, db_block=7)  # many partial blocks
    full = _cos(x, y)
    exp_inds = np.argsort(-full, axis=1)[:, :4]
    assert (inds == exp_inds).all()
    assert sims == approx(np.take_along_axis(full, exp_inds, 1), abs=1e-5)
    # k larger than the database is clipped
    assert R.knn(x, y[:3], 10, backend="torch")[1].shape == (37, 3)


def test_knn_errors():
    with pytest.raises(XRobustError, match="widths differ"):
        R.knn(_rand(2, 4, 0), _rand(2, 5, 0), 1, backend="torch")
    with pytest.raises(XRobustError, match="unknown knn backend"):
        R.knn(_rand(2, 4, 0), _rand(2, 4, 0), 1, backend="annoy")


def test_faiss_backend_agrees_with_torch():
    pytest.importorskip("faiss")
    x, y = _rand(200, 32, 2), _rand(300, 32, 3)
    ts, ti = R.knn(x, y, 4, backend="torch", query_block=64, db_block=100)
    fs, fi = R.knn(x, y, 4, backend="faiss")
    assert (ti == fi).all() and ts == approx(fs, abs=1e-5)


def test_tatoeba_retrieve_and_score():
    y = _rand(50, 24, 4)
    perm = np.random.default_rng(5).permutation(50)
    x = y[perm] + 0.01 * _rand(50, 24, 6)
    assert (R.tatoeba_retrieve(x, y, backend="torch", query_block=8, db_block=16) == perm).all()
    assert R.tatoeba_score(x, y, gold=perm, backend="torch") == {"accuracy": 100.0}
    # parallel-order default gold: only the identity positions of perm count
    assert R.tatoeba_score(x, y, backend="torch")["accuracy"] == approx(100 * np.mean(perm == np.arange(50)))


def test_write_tatoeba_predictions(tmp_path):
    R.write_tatoeba_predictions(tmp_path / "tatoeba" / "test-de.tsv", np.array([3, 0, 1]))
    assert (tmp_path / "tatoeba" / "test-de.tsv").read_text() == "3\n0\n1\n"


def test_margin_candidates_match_full_matrix_restatement():
    # With k >= corpus size every pair is a candidate, so the reference reduces to: margin over
    # the full cosine matrix, best per row (forward) and per column (backward), pooled, greedy 1-1.
    x, y = _rand(4, 8, 7), _rand(4, 8, 8)
    cos = _cos(x, y)
    kx = np.sort(cos, axis=1)[:, ::-1][:, :4].mean(1)
    ky = np.sort(cos, axis=0)[::-1, :][:4, :].mean(0)
    margin = cos / ((kx[:, None] + ky[None, :]) / 2)
    pool = [(i, int(margin[i].argmax()), margin[i].max()) for i in range(4)]
    pool += [(int(margin[:, j].argmax()), j, margin[:, j].max()) for j in range(4)]
    pool.sort(key=lambda c: -c[2])
    seen_s, seen_t, expected = set(), set(), []
    for s, t, sc in pool:
        if s not in seen_s and t not in seen_t:
            seen_s.add(s), seen_t.add(t), expected.append((f"s{s}", f"t{t}", sc))
    got = R.margin_candidates(x, y, [f"s{i}" for i in range(4)], [f"t{i}" for i in range(4)], k=4, backend="torch")
    assert [(s, t) for s, t, _ in got] == [(s, t) for s, t, _ in expected]
    assert [c[2] for c in got] == approx([c[2] for c in expected], rel=1e-5)  # float32 cosines


def test_margin_mining_finds_planted_pairs():
    en = _rand(60, 32, 9)
    de = en[:40] + 0.05 * _rand(40, 32, 10)  # 40 translations of the first 40 English sentences
    cands = R.margin_candidates(de, en, [f"de-{i}" for i in range(40)], [f"en-{i}" for i in range(60)],
                                backend="torch", query_block=16, db_block=16)
    top = {(s, t) for s, t, _ in cands[:40]}
    assert top == {(f"de-{i}", f"en-{i}") for i in range(40)}
    assert len({s for s, _, _ in cands}) == len(cands)  # 1-to-1
    with pytest.raises(XRobustError, match="ids/embeddings mismatch"):
        R.margin_candidates(de, en, ["a"], [f"en-{i}" for i in range(60)])


CANDS = [("a", "A", 3.0), ("b", "B", 2.0), ("c", "X", 1.5), ("d", "D", 1.0)]


def test_tune_threshold_hand_computed():
    # gold {aA, bB, dD}: F1 at each cut .5, .8, 2/3, 6/7 -> keep all, threshold = last score
    th, f1 = R.tune_threshold(CANDS, ["a\tA", "b\tB", "d\tD"])
    assert th == 1.0 and f1 == approx(100 * 6 / 7)
    # gold {aA, bB}: best after b (F1 1.0) -> midpoint between 2.0 and 1.5
    assert R.tune_threshold(CANDS, [("a", "A"), ("b", "B")]) == (1.75, 100.0)
    assert R.extract_pairs(CANDS, 1.75) == [("a", "A"), ("b", "B")]
    # nothing correct: threshold above every score, nothing extracted
    th, f1 = R.tune_threshold(CANDS, [("z", "Z")])
    assert f1 == 0 and R.extract_pairs(CANDS, th) == []
    with pytest.raises(XRobustError, match="dev gold is empty"):
        R.tune_threshold(CANDS, [])


def test_tune_threshold_never_cuts_between_ties():
    cands = [("a", "A", 2.0), ("b", "X", 2.0), ("c", "C", 1.0)]
    # cutting after a alone (F1 2/3 on gold aA, cC) is impossible: a and b tie
    th, f1 = R.tune_threshold(cands, [("a", "A"), ("c", "C")])
    assert R.extract_pairs(cands, th) == [("a", "A"), ("b", "X"), ("c", "C")]
    assert f1 == approx(100 * 0.8)


def test_test_gold_does_not_influence_threshold():
    dev_gold = [("a", "A"), ("b", "B")]  # dev optimum: 1.75
    test = [("p", "P", 3.5), ("q", "Q", 1.9), ("r", "R", 1.2), ("s", "S", 0.5)]
    gold_1 = [("p", "P"), ("q", "Q"), ("r", "R"), ("s", "S")]  # tuned on test: keep all
    gold_2 = [("p", "P")]  # tuned on test: 2.7
    r1 = R.bucc_evaluate(CANDS, dev_gold, test, gold_1)
    r2 = R.bucc_evaluate(CANDS, dev_gold, test, gold_2)
    assert r1["threshold"] == r2["threshold"] == 1.75
    assert R.tune_threshold(test, gold_1)[0] != 1.75 and R.tune_threshold(test, gold_2)[0] != 1.75
    assert r1["test_pairs"] == [("p", "P"), ("q", "Q")]
    assert r1["test"] == {"f1": approx(100 * 2 / 3), "precision": 100.0, "recall": 50.0}
    assert r1["dev"]["f1"] == 100.0
    skipped = R.bucc_evaluate(CANDS, dev_gold, test, None)
    assert "skipped" in skipped["test"] and skipped["threshold"] == 1.75


def test_bucc_prediction_file_and_skipped_scoring(tmp_path):
    path = tmp_path / "predictions" / "bucc2018" / "test-de.tsv"
    R.write_bucc_predictions(path, [("de-1", "en-1"), ("de-2", "en-5")])
    assert path.read_text() == "de-1\ten-1\nde-2\ten-5\n"
    result = R.score_bucc_file(path, tmp_path / "labels" / "test-de.tsv")
    assert "does not exist" in result["skipped"] and "official layout" in result["skipped"]
    assert "no gold file given" in R.score_bucc_file(path, None)["skipped"]
    (tmp_path / "gold.tsv").write_text("de-1\ten-1\nde-3\ten-3\n")
    assert R.score_bucc_file(path, tmp_path / "gold.tsv")["f1"] == 50.0
    with pytest.raises(XRobustError, match="tab or newline"):
        R.write_bucc_predictions(path, [("de\t1", "en-1")])


def test_l2_normalize_accepts_tensors_and_rejects_1d():
    t = R.l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert t.dtype == torch.float32 and t.flatten().tolist() == approx([0.6, 0.8, 0.0, 0.0], abs=1e-7)
    with pytest.raises(XRobustError, match="2-D"):
        R.l2_normalize(np.zeros(3))
