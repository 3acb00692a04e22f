"""Config: typed schema, clear errors naming file and key, overrides, presets."""

from importlib import resources

import pytest
import yaml

from xrobust.config import dump_yaml, load_config, preset_names, to_dict
from xrobust.config.loader import OVERLAYS, PRESET_PACKAGE, overlay_names
from xrobust.errors import ConfigError

GOOD = """
name: t
phases:
  intermediate:
    tasks: [mnli]
    lr: 2e-5
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_config_gets_defaults(tmp_path):
    cfg = load_config(str(write(tmp_path, GOOD)))
    phase = cfg.phases["intermediate"]
    assert phase.lr == 2e-5 and isinstance(phase.lr, float)  # YAML reads 2e-5 as a string
    assert phase.adversarial.method == "none"
    assert cfg.deepspeed == "zero3"


def test_dotted_overrides(tmp_path):
    cfg = load_config(str(write(tmp_path, GOOD)), ["phases.intermediate.lr=3e-5", "seed=7",
                                                   "phases.intermediate.adversarial.method=freelb"])
    assert cfg.phases["intermediate"].lr == 3e-5
    assert cfg.seed == 7
    assert cfg.phases["intermediate"].adversarial.method == "freelb"


@pytest.mark.parametrize("text, expected", [
    (GOOD + "    bogus: 1\n", "unknown key 'phases.intermediate.bogus'"),
    (GOOD + "seed: seven\n", "key 'seed': expected int"),
    (GOOD.replace("name: t\n", ""), "key 'name': missing required value"),
    (GOOD.replace("[mnli]", "[nope]"), "key 'phases.intermediate.tasks[0]': unknown task 'nope'"),
    (GOOD.replace("[mnli]", "[tatoeba]"), "retrieval task"),
    (GOOD + "    sampler: random\n", "key 'phases.intermediate.sampler': 'random' is not one of"),
    (GOOD + "    adversarial: {method: fgsm}\n", "key 'phases.intermediate.adversarial.method'"),
    (GOOD + "    batch_size: 30\n    micro_batch_size: 8\n", "not a multiple of micro_batch_size"),
    ("name: t\nphases: {}\n", "key 'phases': missing required value"),
    ("- a\n- b\n", "expected a mapping of config keys"),
])
def test_bad_configs_name_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_malformed_yaml_names_line(tmp_path):
    path = write(tmp_path, "name: t\nphases:\n  intermediate: {tasks: [mnli\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+, column \d+: malformed YAML"):
        load_config(str(path))


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(str(write(tmp_path, GOOD)), ["seed"])


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="neither a config file nor a preset"):
        load_config("no_such_preset")


def test_base_inheritance_and_loop(tmp_path):
    write(tmp_path, GOOD, "base.yaml")
    child = write(tmp_path, "base: base.yaml\nname: child\nseed: 3\n", "child.yaml")
    cfg = load_config(str(child))
    assert cfg.name == "child" and cfg.seed == 3 and cfg.phases["intermediate"].tasks == ["mnli"]
    write(tmp_path, "base: b.yaml\n", "a.yaml")
    loop = write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(str(loop))


def test_base_list_merges_left_to_right_and_this_file_wins(tmp_path):
    write(tmp_path, GOOD + "    warmup_ratio: 0.2\nseed: 1\n", "first.yaml")
    write(tmp_path, "seed: 2\nphases:\n  intermediate:\n    lr: 4e-5\n", "second.yaml")
    both = load_config(str(write(tmp_path, "base: [first.yaml, second.yaml]\nname: both\n", "both.yaml")))
    phase = both.phases["intermediate"]
    assert both.seed == 2 and phase.lr == 4e-5  # the later base wins, merged key by key
    assert phase.tasks == ["mnli"] and phase.warmup_ratio == 0.2  # what only the earlier base sets stays
    assert load_config(str(write(tmp_path, "base: [second.yaml, first.yaml]\n", "rev.yaml"))).seed == 1
    own = load_config(str(write(tmp_path, "base: [first.yaml, second.yaml]\nseed: 3\n"
                                          "phases: {intermediate: {lr: 5e-5}}\n", "own.yaml")))
    assert own.seed == 3 and own.phases["intermediate"].lr == 5e-5
    assert own.name == "t" and own.phases["intermediate"].warmup_ratio == 0.2


def test_base_list_resolves_files_relative_to_the_config_and_shipped_names(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "seed: 9\n", "extra.yaml")
    config = write(tmp_path, "base: [xstilts_mnli, freelb, sub/extra.yaml]\nname: mine\n", "mine.yaml")
    monkeypatch.chdir(tmp_path / "sub")  # relative to the config, not to the working directory
    mine = to_dict(load_config(str(config)))
    shipped = to_dict(load_config("xstilts_mnli_freelb"))
    assert mine["seed"] == 9 and mine["phases"]["intermediate"]["adversarial"]["method"] == "freelb"
    assert {**mine, "name": shipped["name"], "seed": shipped["seed"]} == shipped


def test_base_cycle_names_the_file_and_the_chain(tmp_path):
    write(tmp_path, GOOD, "root.yaml")
    write(tmp_path, "base: [root.yaml, b.yaml]\n", "a.yaml")
    loop = write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(str(loop))
    message = str(err.value)
    assert message.startswith(f"{loop}: 'base' chain loops back to itself")
    assert f"{loop} -> {tmp_path / 'a.yaml'} -> {loop}" in message
    # a base reached along two paths (a diamond) is no cycle
    write(tmp_path, "base: root.yaml\nseed: 4\n", "mid.yaml")
    assert load_config(str(write(tmp_path, "base: [root.yaml, mid.yaml]\n", "diamond.yaml"))).seed == 4


@pytest.mark.parametrize("base, key, expected", [
    ("[root.yaml, 3]", "base[1]", "expected a preset name, an overlay name or a file path, got 3"),
    ("[[root.yaml]]", "base[0]", "expected a preset name, an overlay name or a file path, got ['root.yaml']"),
    ("{file: root.yaml}", "base", "expected a preset name, an overlay name, a file path or a non-empty list"),
    ("[]", "base", "non-empty list of them, got []"),
    ("[root.yaml, no_such_preset]", "base[1]", "'no_such_preset' is neither a config file nor a preset"),
])
def test_bad_base_names_file_key_and_what_is_expected(tmp_path, base, key, expected):
    write(tmp_path, GOOD, "root.yaml")
    path = write(tmp_path, f"base: {base}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value).startswith(f"{path}: key '{key}': ") and expected in str(err.value)


def test_overlays_are_not_presets_and_fail_clearly_alone():
    overlays = overlay_names()
    assert {"freelb", "smart"} <= set(overlays)
    assert not set(overlays) & set(preset_names())
    for name in overlays:
        with pytest.raises(ConfigError) as err:
            load_config(name)
        assert f"'{name}' is an overlay, not a preset" in str(err.value)
        assert f"base: [xstilts_mnli, {name}]" in str(err.value)


def test_shipped_overlays_leave_name_and_tasks_to_the_preset():
    def keys(node, where=""):
        for key, value in node.items():
            yield f"{where}{key}"
            if isinstance(value, dict):
                yield from keys(value, f"{where}{key}.")

    for name in overlay_names():
        text = (resources.files(PRESET_PACKAGE) / OVERLAYS / f"{name}.yaml").read_text(encoding="utf-8")
        found = list(keys(yaml.safe_load(text)))
        assert not [k for k in found if k in ("name", "base") or k.endswith(".tasks")], (name, found)


def test_every_shipped_preset_loads():
    names = set(preset_names())
    expected = {"demo", "multitask"} | {f"xstilts_{t}" for t in
                                        "anli_plus mnli qqp sst2 squad hellaswag cosmosqa commonsenseqa ccg".split()}
    assert expected <= names
    for name in names - {"xstilts_base"}:
        cfg = load_config(name)
        assert cfg.phases
    multi = load_config("multitask")
    assert len(multi.phases["intermediate"].tasks) == 9


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("demo", ["seed=5"])
    path = write(tmp_path, dump_yaml(cfg), "resolved.yaml")
    again = load_config(str(path))
    assert again == cfg
