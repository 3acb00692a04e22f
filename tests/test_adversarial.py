"""Adversarial strategies on a real 1-rank DeepSpeed engine (ZeRO-0, gloo), single process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from adv_common import FORMATS, join_process_group, make_batch, tiny_model  # noqa: E402

from xrobust.adversarial import MethodConfig, build_strategy, strategy_class, symmetric_kl  # noqa: E402
from xrobust.errors import ConfigError  # noqa: E402

METHODS = ("none", "fgm", "pgd", "freelb", "smart", "r3f", "rs-rp", "rs-da")
GRAD_METHODS = ("fgm", "pgd", "freelb", "smart")


SETTINGS = {  # each method's keys (docs/ADVERSARIAL.md); the eager kernels wherever a method has kernels
    "none": {},
    "fgm": dict(epsilon=0.1),
    "pgd": dict(steps=2, alpha=0.1, sigma=0.1, epsilon=0.3),
    "freelb": dict(steps=2, alpha=0.1, sigma=0.1, epsilon=0.3),
    "smart": dict(steps=2, eta=1e-2, sigma=1e-3, epsilon=0.05),
    "r3f": dict(eps=1e-3),
    "rs-rp": dict(sigma=0.1),
    "rs-da": dict(neighbours="unused.tsv"),
}


def cfg_for(method: str, **kw) -> MethodConfig:
    config = strategy_class(method).Config
    backend = {"backend": "eager"} if "backend" in config.keys() else {}
    return config(**{**SETTINGS[method], **backend, **kw})


@pytest.fixture(scope="module", autouse=True)
def dist():
    join_process_group()
    yield


def make_engine(model, gas: int = 1, lr: float = 1e-3):
    import deepspeed

    ds = {"train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": gas, "gradient_clipping": 1.0,
          "zero_optimization": {"stage": 0}, "steps_per_print": 10**9}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=ds)
    return engine


def run_steps(engine, strategy, fmt, steps=2, seed=0):
    stats = []
    for s in range(steps):
        for m in range(engine.gradient_accumulation_steps()):
            stats.append(strategy.step(engine, make_batch(fmt, seed * 100 + s * 10 + m)))
            engine.step()
    return stats


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_every_format(method, fmt):
    model = tiny_model()
    before = params(model)
    engine = make_engine(model)
    strategy = build_strategy(cfg_for(method), model)
    stats = run_steps(engine, strategy, fmt, steps=1)
    for st in stats:
        assert torch.isfinite(torch.tensor(st["loss"]))
        if strategy.adversarial:
            assert {"loss", "adv_loss", "delta_norm", "nonfinite_resets"} <= set(st)
            assert st["nonfinite_resets"] == 0
            assert st["delta_norm"] > 0
            if method != "rs-rp":
                assert "clean_loss" in st
    after = params(model)
    head = {"classification": "cls", "multiple_choice": "mc", "span_qa": "qa", "tagging": "tag"}[fmt]
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert any(k.startswith(f"heads.{head}.") for k in changed)
    assert any(k.startswith("encoder.embeddings.word_embeddings") for k in changed)
    assert all(torch.isfinite(v).all() for v in after.values())
    strategy.close()


@pytest.mark.parametrize("method", METHODS)
def test_idle_heads_get_a_zero_gradient_under_every_method(method):
    """The idle-head contract (every objective is built from training logits, which carry a zero
    term over the other heads): every head the micro-step does not use gets a gradient, exactly 0.
    tests/test_adversarial_zero3.py checks what this buys under ZeRO-3 (idle heads do not move)."""
    model = tiny_model()
    engine = make_engine(model)
    strategy = build_strategy(cfg_for(method), model)
    for fmt in FORMATS:
        model.zero_grad(set_to_none=True)  # a gradient below comes from this micro-step
        strategy.step(engine, make_batch(fmt, 7))
        used = {"classification": "cls", "multiple_choice": "mc", "span_qa": "qa", "tagging": "tag"}[fmt]
        for name, p in model.named_parameters():
            if name.startswith("heads.") and not name.startswith(f"heads.{used}."):
                assert p.grad is not None, f"{method}/{fmt}: {name} got no gradient"
                assert torch.count_nonzero(p.grad) == 0, f"{method}/{fmt}: {name} got a nonzero gradient"
            elif name.startswith(f"heads.{used}.") and name.endswith("weight"):
                assert p.grad is not None and torch.count_nonzero(p.grad) > 0, f"{method}/{fmt}: {name}"
        engine.step()
    strategy.close()


def test_none_is_bit_identical_to_plain_training():
    a, b = tiny_model(), tiny_model()
    ea, eb = make_engine(a, gas=2), make_engine(b, gas=2)
    strategy = build_strategy(MethodConfig(), a)
    for s in range(3):
        for m in range(2):
            batch = make_batch(FORMATS[(s + m) % 4], s * 10 + m)
            strategy.step(ea, batch)
            ea.step()
            out = eb(**batch)
            eb.backward(out.loss)
            eb.step()
    pa, pb = params(a), params(b)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], v) for k, v in params(tiny_model()).items())


def _record_deltas(model, strategy):
    seen = []

    def hook(module, inputs, output):
        if strategy.injector.delta is not None:
            seen.append(strategy.injector.delta.detach().clone())

    handle = model.word_embeddings().register_forward_hook(hook)
    return seen, handle


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("fmt", ["classification", "multiple_choice"])
def test_freelb_stays_in_ball_and_padding_is_zero(norm, fmt):
    model = tiny_model()
    engine = make_engine(model)
    max_norm = 0.05 if norm == "l2" else 0.01
    # alpha far above epsilon: every ascent step ends on the projection
    strategy = build_strategy(cfg_for("freelb", steps=3, alpha=1.0, epsilon=max_norm, sigma=0.5,
                                      norm=norm, backend="auto"), model)
    seen, handle = _record_deltas(model, strategy)
    batches = []
    for s in range(3):
        batch = make_batch(fmt, 50 + s)
        batches.append(batch)
        strategy.step(engine, batch)
        engine.step()
    handle.remove()
    assert len(seen) == 9
    for i, delta in enumerate(seen):
        mask = batches[i // 3]["attention_mask"]
        mask = mask.flatten(0, 1) if mask.dim() == 3 else mask
        pad = mask == 0
        assert pad.any()
        assert torch.count_nonzero(delta[pad]) == 0, "padding positions of delta must stay exactly 0"
        flat = delta.flatten(1)
        n = flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)
        assert (n <= max_norm * (1 + 1e-5)).all(), n
        if i % 3:  # after an ascent step the projection is active
            assert torch.allclose(n, torch.full_like(n, max_norm), rtol=1e-4)


@pytest.mark.parametrize("method", GRAD_METHODS)
def test_nonfinite_delta_gradient_is_reset_and_counted(method):
    model = tiny_model()
    engine = make_engine(model)
    strategy = build_strategy(cfg_for(method), model)  # pgd, freelb and smart: 2 steps
    calls = []

    def poison(g):
        calls.append(1)
        if len(calls) == 1:  # the first delta gradient of the first micro-batch only
            g = g.clone()
            g[1, 2, 0] = float("nan")
            g[1, 3, 1] = float("inf")
        return g

    strategy.grad_hook = poison
    stats = run_steps(engine, strategy, "classification", steps=3)
    assert stats[0]["nonfinite_resets"] == 1
    assert all(s["nonfinite_resets"] == 0 for s in stats[1:])
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in stats)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_warm_up_trains_plainly_before_start_step():
    model = tiny_model()
    engine = make_engine(model)
    strategy = build_strategy(cfg_for("freelb", start_step=2), model)
    stats = run_steps(engine, strategy, "tagging", steps=3)
    assert [s["adv_active"] for s in stats] == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("bad,key", [
    (dict(method="bogus"), "bogus"),
    (dict(method="freelb", steps=0), "steps"),
    (dict(method="pgd", alpha=0.0), "alpha"),
    (dict(method="fgm", epsilon=0.0), "epsilon"),
    (dict(method="r3f", eps=0.0), "eps"),
    (dict(method="rs-rp", sigma=0.0), "sigma"),
    (dict(method="smart", lambda_s=0.0), "lambda_s"),
    (dict(method="r3f", r3f_lambda=float("nan")), "r3f_lambda"),
    (dict(method="fgm", norm="l1"), "norm"),
    (dict(method="r3f", noise_type="laplace"), "noise_type"),
    (dict(method="rs-da"), "neighbours"),
    (dict(method="rs-da", neighbours="n.tsv", copies=0), "copies"),
    (dict(method="freelb", epsilon=-1.0), "epsilon"),
    (dict(method="pgd", start_step=-1), "start_step"),
    (dict(method="smart", ascent_divergence="js"), "ascent_divergence"),
    (dict(method="smart", backend="cuda"), "backend"),
    (dict(method="freelb", reuse_dropout_masks="yes"), "reuse_dropout_masks"),
])
def test_bad_settings_raise_config_error(bad, key):
    method = bad.pop("method")
    with pytest.raises(ConfigError, match=key):
        config = strategy_class(method).Config(**bad)
        build_strategy(config, tiny_model())


def test_a_config_of_another_method_is_refused():
    with pytest.raises(ConfigError, match="freelb takes a FreeLBConfig"):
        build_strategy(strategy_class("pgd").Config(method="freelb"), tiny_model())


def test_symmetric_kl_per_format():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 6, 2, generator=g)
    b = torch.randn(2, 6, 2, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    assert symmetric_kl("span_qa", a, a, attention_mask=mask).abs() < 1e-6
    k1 = symmetric_kl("span_qa", a, b, attention_mask=mask)
    b2 = b.clone()
    b2[0, 4:] = 100.0  # padding positions must not matter
    assert torch.allclose(k1, symmetric_kl("span_qa", a, b2, attention_mask=mask))
    assert k1 > 0 and torch.isfinite(k1)
    t1, t2 = torch.randn(2, 6, 5, generator=g), torch.randn(2, 6, 5, generator=g)
    labels = torch.full((2, 6), -100)
    labels[:, 1] = 0
    t2b = t2.clone()
    t2b[:, 2:] += 50
    assert torch.allclose(symmetric_kl("tagging", t1, t2, labels=labels), symmetric_kl("tagging", t1, t2b, labels=labels))
    c1, c2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    p, q = c1.softmax(-1), c2.softmax(-1)
    want = ((p * (p.log() - q.log())).sum(-1) + (q * (q.log() - p.log())).sum(-1)).mean()
    assert torch.allclose(symmetric_kl("classification", c1, c2), want, atol=1e-6)


# ---- RS-DA (data level) --------------------------------------------------------------------------
def _neighbours(tmp_path):
    p = tmp_path / "nb.tsv"
    p.write_text("# comment\ncar\tauto vehicle\nred\tcrimson\nwho\twhom\nsaw\tspotted\n", encoding="utf-8")
    return p


def test_rsda_augments_every_format_and_keeps_alignment(tmp_path):
    from xrobust.adversarial import augment_examples, read_neighbours

    nb = _neighbours(tmp_path)
    assert read_neighbours(nb)["car"] == ["auto", "vehicle"]
    ctx = "Anna saw a red car in Tesh."
    cases = {
        "classification": [{"id": "a", "text_a": "Car, red car!", "text_b": "He saw it.", "label": 1},
                           {"id": "b", "text_a": "a red car", "text_b": None, "label": 0}],
        "multiple_choice": [{"id": "m", "prompt": "Who saw the car?", "choices": ["red car", "a dog"], "label": 0}],
        "tagging": [{"id": "t", "tokens": ["Anna", "saw", "the", "red", "car", "."], "tags": [1, 2, 3, 4, 5, 0]}],
        "span_qa": [{"id": "q", "question": "Who saw the red car?", "context": ctx,
                     "answers": {"text": ["Anna"], "answer_start": [0]}}],
    }
    for fmt, rows in cases.items():
        ds = augment_examples(rows, fmt, nb, copies=3, seed=0)
        assert len(ds) == 4 * len(rows)
        aug = list(ds)[len(rows):]
        assert [a["id"] for a in aug[:len(rows)]] == [f"{r['id']}#rsda1" for r in rows]
        if fmt == "tagging":
            assert all(len(a["tokens"]) == len(a["tags"]) == 6 and a["tags"] == rows[0]["tags"] for a in aug)
        if fmt == "span_qa":
            assert all(a["context"] == ctx and a["answers"] == rows[0]["answers"] for a in aug)
            assert any(a["question"] != rows[0]["question"] for a in aug)
        if fmt == "classification":
            texts = {a["text_a"] for a in aug}
            assert len(texts) > 1 and all(t.endswith("!") or t.endswith("car") or t.endswith("vehicle")
                                          or t.endswith("auto") for t in texts)
            assert all(a["text_b"] is None for a in aug[1::2])
    again = augment_examples(cases["tagging"], "tagging", nb, copies=3, seed=0)
    assert list(again) == list(augment_examples(cases["tagging"], "tagging", nb, copies=3, seed=0))


def test_the_strategy_declares_its_data_transform(tmp_path):
    """The data pipeline asks the method's class for the training examples (training/data.py): RS-DA
    augments them, every other method trains on them as they are."""
    from xrobust.adversarial import augment_examples

    nb = _neighbours(tmp_path)
    rows = [{"id": "t", "tokens": ["Anna", "saw", "the", "red", "car", "."], "tags": [1, 2, 3, 4, 5, 0]}]
    rsda = cfg_for("rs-da", neighbours=str(nb), copies=2)
    got = strategy_class("rs-da").train_examples(rsda, rows, "tagging", seed=3)
    assert list(got) == list(augment_examples(rows, "tagging", nb, copies=2, seed=3)) and len(got) == 3
    # the factor study cost estimates scale an epoch's steps by
    assert len(got) == len(rows) * strategy_class("rs-da").train_examples_factor(rsda)
    for method in METHODS[:-1]:
        assert strategy_class(method).train_examples(cfg_for(method), rows, "tagging", seed=3) is rows, method
        assert strategy_class(method).train_examples_factor(cfg_for(method)) == 1, method


def test_rsda_bad_neighbours_file(tmp_path):
    from xrobust.adversarial import read_neighbours
    from xrobust.errors import DataError

    bad = tmp_path / "bad.tsv"
    bad.write_text("car auto\n")
    with pytest.raises(DataError, match="bad.tsv:1"):
        read_neighbours(bad)
    with pytest.raises(DataError, match="not found"):
        read_neighbours(tmp_path / "missing.tsv")


def test_write_demo_neighbours(tmp_path):
    from xrobust.adversarial import read_neighbours
    from xrobust.demo.neighbours import write_demo_neighbours

    path = write_demo_neighbours(tmp_path / "demo" / "nb.tsv")
    table = read_neighbours(path)
    assert "car" in table and "red" in table
    assert "crimson" not in table["red"] and "blue" in table["red"]
    assert "hated" not in table.get("loved", [])


def test_adversarial_presets_load_and_validate():
    from xrobust.adversarial import validate_adversarial
    from xrobust.config.loader import load_config

    from xrobust.tasks import INTERMEDIATE_TASKS

    for base in [f"xstilts_{t}" for t in INTERMEDIATE_TASKS] + ["multitask"]:
        plain = load_config(base)
        for method in ("freelb", "smart"):
            cfg = load_config(f"{base}_{method}")
            adv = cfg.phases["intermediate"].adversarial
            assert adv.method == method and cfg.name == f"{plain.name}-{method}"
            assert cfg.phases["intermediate"].tasks == plain.phases["intermediate"].tasks
            validate_adversarial(adv)


@pytest.mark.parametrize("method,settings", [
    ("none", {}), ("fgm", {}), ("pgd", {"sigma": 0.0}), ("pgd", {}), ("pgd", {"steps": 3}), ("freelb", {}),
    ("freelb", {"steps": 3}), ("smart", {}), ("smart", {"steps": 1}), ("r3f", {}), ("rs-rp", {}), ("rs-da", {}),
])
@pytest.mark.parametrize("fmt", ("classification", "multiple_choice"))
def test_passes_count_what_a_step_runs(method, settings, fmt):
    """Strategy.passes (the cost `xrobust bench` and study estimates use) equals the rows the
    encoder's embeddings see in one micro-step over the micro-batch's rows: every training,
    ascent or doubled-batch forward counted."""
    from xrobust.modeling.model import embedding_mask

    model = tiny_model()
    engine = make_engine(model)
    cfg = cfg_for(method, **settings)
    strategy = build_strategy(cfg, model)
    rows = []
    handle = model.word_embeddings().register_forward_hook(lambda m, i, out: rows.append(out.size(0)))
    batch = make_batch(fmt, 3)
    strategy.step(engine, batch)
    handle.remove()
    strategy.close()
    assert sum(rows) / embedding_mask(batch).size(0) == strategy_class(method).passes(cfg), rows


def test_adversarial_bench_counts_the_passes_of_every_case():
    """`xrobust bench adversarial` judges each method by its forward/backward passes per step."""
    import argparse

    from xrobust.bench.adversarial import _cases, _passes

    passes = {label: _passes(method, settings) for label, method, settings, _ in
              _cases(argparse.Namespace(k=2, methods=None))}
    assert passes == {"plain": 1, "fgm": 2, "pgd-2": 3, "pgd-2-random-start": 4, "freelb-2": 2,
                      "freelb-2-uncoalesced": 2, "smart-1": 3, "r3f": 2, "rs-rp": 1}
