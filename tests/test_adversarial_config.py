"""`phases.<phase>.adversarial`: each method's own keys (its paper's names), checked where the method is
defined; the old flat form (step_size, init_mag, max_norm, weight for every method) mapped per method or
refused with the new form in the message; a --resume of a run recorded in the old form sees no change;
methods of one's own module named as package.module:Class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xrobust.config import config_from_dict, load_config, to_dict
from xrobust.errors import ConfigError
from xrobust.training.rundir import CONFIG_FILE, check_resumed_config

SNAPSHOT = Path(__file__).parent / "data" / "preset_configs.json"


def config(adversarial: dict):
    return config_from_dict({"name": "t", "phases": {"p": {"tasks": ["mnli"], "adversarial": adversarial}}}, "c.yaml")


def resolved(adversarial: dict) -> dict:
    return to_dict(config(adversarial))["phases"]["p"]["adversarial"]


# -- the new form --------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, expected", [
    ({}, {"method": "none"}),
    ({"method": "fgm", "epsilon": 0.2},
     {"method": "fgm", "epsilon": 0.2, "norm": "l2", "start_step": 0, "backend": "auto", "coalesce": True}),
    ({"method": "freelb", "steps": 3, "alpha": 0.05, "sigma": 0.0, "epsilon": 0.2, "norm": "linf"},
     {"method": "freelb", "steps": 3, "alpha": 0.05, "sigma": 0.0, "epsilon": 0.2, "norm": "linf",
      "reuse_dropout_masks": True, "start_step": 0, "backend": "auto", "coalesce": True}),
    ({"method": "smart", "eta": "1e-3", "sigma": 1e-5, "lambda_s": 2},  # YAML 1.1 reads 1e-3 as a string
     {"method": "smart", "steps": 2, "eta": 1e-3, "sigma": 1e-5, "epsilon": 0.3, "norm": "l2", "lambda_s": 2.0,
      "ascent_divergence": "symmetric", "start_step": 0, "backend": "auto"}),
    ({"method": "r3f", "eps": 1e-5, "noise_type": "normal", "r3f_lambda": 0.5},
     {"method": "r3f", "eps": 1e-5, "noise_type": "normal", "r3f_lambda": 0.5, "start_step": 0}),
    ({"method": "rs-rp", "sigma": 0.2},
     {"method": "rs-rp", "sigma": 0.2, "noise_type": "uniform", "start_step": 0}),
    ({"method": "rs-da", "neighbours": "n.tsv", "copies": 2}, {"method": "rs-da", "neighbours": "n.tsv", "copies": 2}),
])
def test_each_method_has_its_own_keys(section, expected):
    got = resolved(section)
    assert got == expected and list(got) == list(expected)


@pytest.mark.parametrize("section, fragments", [
    ({"method": "r3f", "alpha": 0.1}, ["unknown key 'phases.p.adversarial.alpha'", "r3f has the keys: method, eps,"]),
    ({"method": "none", "steps": 2}, ["unknown key 'phases.p.adversarial.steps'; none has the keys: method"]),
    ({"method": "freelb", "alpha": 0.0}, ["key 'phases.p.adversarial.alpha': expected a finite value > 0, got 0.0"]),
    ({"method": "freelb", "steps": 0}, ["key 'phases.p.adversarial.steps': expected an integer >= 1, got 0"]),
    ({"method": "smart", "norm": "l1"}, ["key 'phases.p.adversarial.norm': 'l1' is not one of: l2, linf"]),
    ({"method": "rs-da"}, ["key 'phases.p.adversarial.neighbours': missing required value"]),
    ({"method": "fgsm"}, ["key 'phases.p.adversarial.method': 'fgsm' is not one of: none, fgm", "package.module:ClassName"]),
])
def test_bad_sections_name_the_key(section, fragments):
    with pytest.raises(ConfigError) as err:
        config(section)
    assert str(err.value).startswith("c.yaml: ")
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


# -- the old flat form ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flat, expected", [  # docs/ADVERSARIAL.md, "The old flat form"
    ({"method": "fgm", "step_size": 0.2, "max_norm": 0.3, "start_step": 5},
     {"method": "fgm", "epsilon": 0.2, "norm": "l2", "start_step": 5, "backend": "auto", "coalesce": True}),
    ({"method": "pgd", "steps": 3, "step_size": 0.2, "init_mag": 0.0, "max_norm": 0.5, "norm": "linf"},
     {"method": "pgd", "steps": 3, "alpha": 0.2, "epsilon": 0.5, "sigma": 0.0, "norm": "linf", "start_step": 0,
      "backend": "auto", "coalesce": True}),
    ({"method": "freelb", "step_size": 0.3, "init_mag": 0.05, "reuse_dropout_masks": False, "coalesce": False},
     {"method": "freelb", "steps": 2, "alpha": 0.3, "sigma": 0.05, "epsilon": 0.3, "norm": "l2",
      "reuse_dropout_masks": False, "start_step": 0, "backend": "auto", "coalesce": False}),
    ({"method": "smart", "steps": 1, "step_size": 1e-3, "init_mag": 1e-5, "max_norm": 1e-5, "weight": 3.0,
      "ascent_divergence": "stable_kl", "backend": "eager"},
     {"method": "smart", "steps": 1, "eta": 1e-3, "sigma": 1e-5, "epsilon": 1e-5, "norm": "l2", "lambda_s": 3.0,
      "ascent_divergence": "stable_kl", "start_step": 0, "backend": "eager"}),
    ({"method": "r3f", "init_mag": 1e-5, "weight": 0.5, "noise": "normal", "step_size": 7.0},  # step_size unread
     {"method": "r3f", "eps": 1e-5, "noise_type": "normal", "r3f_lambda": 0.5, "start_step": 0}),
    ({"method": "rs-rp", "init_mag": 0.2, "noise": "normal"},
     {"method": "rs-rp", "sigma": 0.2, "noise_type": "normal", "start_step": 0}),
    ({"method": "r3f", "noise": "normal"},  # an old name without step_size, init_mag, max_norm or weight
     {"method": "r3f", "eps": 0.1, "noise_type": "normal", "r3f_lambda": 1.0, "start_step": 0}),
    ({"method": "rs-da", "neighbours": "n.tsv", "copies": 3, "step_size": 0.1},
     {"method": "rs-da", "neighbours": "n.tsv", "copies": 3}),
    ({"method": "none", "steps": 2, "step_size": 0.1, "init_mag": 0.1, "max_norm": 0.3, "norm": "l2",
      "start_step": 0, "weight": 1.0, "noise": "uniform", "neighbours": None, "copies": 1, "backend": "auto",
      "ascent_divergence": "symmetric", "reuse_dropout_masks": True, "coalesce": True},  # as recorded
     {"method": "none"}),
])
def test_the_old_flat_form_is_mapped_per_method(flat, expected):
    got = resolved(flat)
    assert got == expected and list(got) == list(expected)


@pytest.mark.parametrize("flat, fragments", [
    # the old FGM step was clipped to max_norm; FGM's config has no clip
    ({"method": "fgm", "step_size": 0.5, "max_norm": 0.3},
     ["key 'phases.p.adversarial.max_norm'", "write epsilon: 0.3"]),
    # an old name next to new ones (e.g. a preset in the new form with an old --set)
    ({"method": "freelb", "alpha": 0.1, "init_mag": 0.2},
     ["key 'phases.p.adversarial.init_mag': a key of the old flat form, but the new key 'alpha' is here too",
      "init_mag -> sigma", "steps, alpha, sigma, epsilon"]),
    ({"method": "smart", "step_size": float("nan")}, ["key 'phases.p.adversarial.step_size': expected a finite number"]),
    ({"method": "freelb", "step_size": -1.0}, ["key 'phases.p.adversarial.alpha': expected a finite value > 0"]),
])
def test_old_settings_that_cannot_be_mapped_say_how_to_write_the_new_form(flat, fragments):
    with pytest.raises(ConfigError) as err:
        config(flat)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_an_old_form_override_on_a_new_form_preset_says_what_to_write():
    with pytest.raises(ConfigError, match="'phases.intermediate.adversarial.step_size'.*step_size -> alpha"):
        load_config("xstilts_mnli_freelb", ["phases.intermediate.adversarial.step_size=0.2"])
    cfg = load_config("xstilts_mnli_freelb", ["phases.intermediate.adversarial.alpha=0.2"])
    assert cfg.phases["intermediate"].adversarial.alpha == 0.2


@pytest.mark.parametrize("preset", ["xstilts_mnli_freelb", "multitask_smart", "xstilts_squad"])
def test_resuming_a_run_recorded_in_the_old_form_sees_no_change(tmp_path, preset):
    """config.yaml as the code before the per-method configs wrote it (the recorded snapshot of the
    preset); resumed with today's preset, which resolves to the new form."""
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))[preset]["config"]
    assert "step_size" in recorded["phases"]["intermediate"]["adversarial"]  # the old form
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(recorded, sort_keys=False))
    check_resumed_config(tmp_path, load_config(preset), accept=False)  # no change: no error
    if preset.endswith("_freelb"):
        changed = load_config(preset, ["phases.intermediate.adversarial.alpha=0.2"])
        with pytest.raises(ConfigError, match=r"phases\.intermediate\.adversarial\.alpha: 0\.1 -> 0\.2"):
            check_resumed_config(tmp_path, changed, accept=False)


# -- methods of one's own ----------------------------------------------------------------------------

@pytest.mark.parametrize("method, fragment", [
    ("no_such_module_xr:Method", "cannot import module 'no_such_module_xr'"),
    ("xrobust.errors:Nothing", "module 'xrobust.errors' has no 'Nothing'"),
    ("xrobust.errors:ConfigError", "is not a subclass of xrobust.adversarial.Strategy"),
])
def test_a_dotted_method_that_is_not_a_strategy_is_refused(method, fragment):
    with pytest.raises(ConfigError) as err:
        config({"method": method})
    assert "key 'phases.p.adversarial.method'" in str(err.value) and fragment in str(err.value), str(err.value)
