"""Study planning: the axes expanded into run directories, the work they share, the job graph, the cost."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from xrobust.config import config_from_dict
from xrobust.errors import ConfigError
from xrobust.study.cost import gpu_hours, training_runs
from xrobust.study.plan import build_plan, method_overlay
from xrobust.study.spec import load_study

REPO = Path(__file__).resolve().parents[1]
XTREME = ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc", "tatoeba"]


def _study(tmp_path, base="multitask", **section) -> Path:
    body = {"name": "advxlt-v1", "intermediate": ["none", "mnli", "squad", "hellaswag", "multitask"],
            "method": ["none", "freelb", "smart"], "seeds": [1, 2, 3], "targets": XTREME,
            "baseline": {"intermediate": "none", "method": "none"}, **section}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"base": base, "output_dir": str(tmp_path / "runs"), "study": body}))
    return path


def test_issue_example_counts_and_sharing(tmp_path):
    plan = build_plan(load_study(str(_study(tmp_path))))
    kinds = Counter(u.kind for u in plan.units.values())
    # every (task, method, seed) intermediate once: 4 trained values x 3 methods x 3 seeds; one run dir per
    # cell run; the untrained encoder once for the retrieval scores of `none`
    assert kinds == {"intermediate": 36, "cell": 45, "pretrained": 1}
    assert len(plan.runs) == 45 and not plan.aliases
    runs = Counter(r.phase for r in training_runs(plan))
    assert runs == {"intermediate": 36, "target_classification": 90, "target_tagging": 90, "target_qa": 90}
    qa = {tuple(r.tasks) for r in training_runs(plan) if r.phase == "target_qa"}
    assert qa == {("xquad", "mlqa"), ("tydiqa",)}  # XQuAD and MLQA share one SQuAD-trained run

    cell = plan.units["cells/mnli-freelb-s2"]
    encoder = plan.units["intermediate/mnli-freelb-s2"]
    assert cell.deps == [encoder.key] and cell.level == 2 and encoder.level == 1
    for key, phase in cell.config["phases"].items():
        assert phase["init_encoder"] == str(encoder.run_dir / "intermediate" / "model"), key
        assert phase["adversarial"]["method"] == "freelb"
    assert cell.config["seed"] == 2 and cell.config["tracking"]["group"] == "advxlt-v1"
    assert cell.evaluates == ["xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa"]
    assert encoder.evaluates == ["bucc", "tatoeba"]  # retrieval on the intermediate encoder, no target run
    assert encoder.config["phases"]["intermediate"]["tasks"] == ["mnli"]
    assert list(encoder.config["phases"]) == ["intermediate"]
    multitask = plan.units["intermediate/multitask-none-s1"].config["phases"]["intermediate"]
    assert len(multitask["tasks"]) == 9 and multitask["multitask"]
    none = plan.units["cells/none-smart-s3"]
    assert none.deps == [] and none.level == 1 and "intermediate" not in none.config["phases"]
    assert {p["init_encoder"] for p in none.config["phases"].values()} == {"xlm-roberta-large"}
    assert plan.runs[("none", "smart", 3)].encoder == "pretrained"
    assert plan.units["pretrained"].evaluates == ["bucc", "tatoeba"]
    for unit in plan.units.values():  # every unit is a valid experiment config of its own
        config_from_dict(dict(unit.config), unit.key)
        assert unit.run_dir.parent.parent == tmp_path.resolve() / "runs" / "advxlt-v1" or unit.kind == "pretrained"


def test_method_on_some_phases_shares_the_rest(tmp_path):
    # method on the target phases only: the intermediate run of (task, seed) serves every method
    plan = build_plan(load_study(str(_study(tmp_path, method_phases=["target_classification", "target_tagging",
                                                                     "target_qa"]))))
    kinds = Counter(u.kind for u in plan.units.values())
    assert kinds == {"intermediate": 12, "cell": 45, "pretrained": 1}
    assert plan.runs[("mnli", "freelb", 1)].encoder == plan.runs[("mnli", "smart", 1)].encoder == "intermediate/mnli-s1"
    # method on the intermediate phase only: with no intermediate phase, freelb and smart train what `none` does
    plan = build_plan(load_study(str(_study(tmp_path, method_phases=["intermediate"]))))
    assert Counter(u.kind for u in plan.units.values()) == {"intermediate": 36, "cell": 39, "pretrained": 1}
    assert plan.runs[("none", "freelb", 2)].cell == plan.runs[("none", "none", 2)].cell == "cells/none-none-s2"
    assert plan.aliases["cells/none-smart-s1"] == "cells/none-none-s1"
    assert all(p["adversarial"]["method"] == "none" for p in plan.units["cells/mnli-freelb-s1"].config["phases"].values())


def test_method_overlay_is_the_shipped_overlay_then_the_study_settings():
    freelb = method_overlay("freelb", ["a", "b"], {"start_step": 0})["phases"]
    assert set(freelb) == {"a", "b"}
    overlay = yaml.safe_load((REPO / "xrobust/config/presets/overlays/freelb.yaml").read_text())
    expected = {**overlay["phases"]["intermediate"]["adversarial"], "start_step": 0}
    assert freelb["a"]["adversarial"] == expected and expected["steps"] == 2 and expected["epsilon"] == 0.3
    # the same settings as the shipped adversarial preset of that method
    from xrobust.config import load_config, to_dict

    preset = to_dict(load_config("multitask_freelb"))["phases"]["intermediate"]["adversarial"]
    assert {k: preset[k] for k in expected if k != "start_step"} == {k: v for k, v in expected.items()
                                                                     if k != "start_step"}
    assert method_overlay("none", ["a"], {})["phases"]["a"]["adversarial"] == {"method": "none"}
    assert method_overlay("r3f", ["a"], {})["phases"]["a"]["adversarial"] == {"method": "r3f"}  # no preset: defaults


def test_demo_study_plan():
    from xrobust.config import load_config, preset_names

    assert "demo_study" not in preset_names()  # a study config, not an experiment preset
    with pytest.raises(ConfigError, match="'demo_study' is a study config"):
        load_config("demo_study")
    plan = build_plan(load_study("demo_study"))
    assert Counter(u.kind for u in plan.units.values()) == {"intermediate": 6, "cell": 9, "pretrained": 1}
    assert [len(level) for level in plan.levels()] == [10, 6]
    assert plan.units["intermediate/multitask-freelb-s1"].config["phases"]["intermediate"]["adversarial"][
        "start_step"] == 0


@pytest.mark.parametrize("section, message", [
    ({"intermediate": ["none", "nope"]}, "study.intermediate"),
    ({"intermediate": ["none", "tatoeba"]}, "retrieval task"),
    ({"method": ["none", "adv"]}, "study.method"),
    ({"seeds": [1, 1]}, "study.seeds"),
    ({"baseline": {"intermediate": "qqp", "method": "none"}}, "not a cell of the grid"),
    ({"colour": "blue"}, "unknown key"),
    ({"method_phases": ["nope"]}, "study.method_phases"),
    ({"targets": ["xnli", "demo_xnli"]}, "demo_xnli trained by no target phase"),
])
def test_bad_study_configs_name_the_key(tmp_path, section, message):
    path = _study(tmp_path, **section)
    with pytest.raises(ConfigError, match=message) as info:
        build_plan(load_study(str(path)))
    assert str(path) in str(info.value)


def test_bad_base_key_names_the_study_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": "multitask", "phases": {"intermediate": {"lr": "fast"}},
                                    "study": {"name": "x", "intermediate": ["mnli"], "seeds": [1]}}))
    with pytest.raises(ConfigError, match=f"{path}.*phases.intermediate.lr"):
        load_study(str(path))


def test_cost_estimate(tmp_path):
    path = _study(tmp_path, intermediate=["none", "mnli"], method=["none", "freelb"], seeds=[1],
                  targets=["xnli", "tatoeba"], throughput={"tokens_per_s": 1000, "gpus": 4})
    study = load_study(str(path), ["phases.intermediate.max_steps=10", "phases.target_classification.max_steps=5"])
    plan = build_plan(study)
    runs = training_runs(plan)
    assert sorted((r.unit, r.steps, r.passes) for r in runs) == [
        ("cells/mnli-freelb-s1", 5, 2), ("cells/mnli-none-s1", 5, 1), ("cells/none-freelb-s1", 5, 2),
        ("cells/none-none-s1", 5, 1), ("intermediate/mnli-freelb-s1", 10, 2), ("intermediate/mnli-none-s1", 10, 1)]
    # padded tokens: steps x batch 32 x max length (multitask preset: 256 intermediate, 128 target)
    tokens = (5 * 32 * 128) * (1 + 2 + 2 + 1) + 10 * 32 * 256 * (2 + 1)
    assert gpu_hours(runs, (1000.0, 4)) == pytest.approx(tokens / 1000 * 4 / 3600)
    out = subprocess.run([sys.executable, "-m", "xrobust.cli", "study", "plan", "--config", str(path), "--set",
                          "phases.intermediate.max_steps=10", "--set", "phases.target_classification.max_steps=5"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"estimate: {tokens / 1000 * 4 / 3600:,.1f} GPU-hours" in out.stdout
    assert "level 2: array of 2 (2 cell), afterok on level 1" in out.stdout
    assert "target_classification        4           5  xnli" in out.stdout
