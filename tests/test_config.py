"""Config: typed schema, clear errors naming file and key, overrides, presets."""

import pytest

from xrobust.config import dump_yaml, load_config, preset_names
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
