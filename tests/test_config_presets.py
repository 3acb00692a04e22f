"""Every shipped preset resolves to the config recorded in tests/data/preset_configs.json.

The snapshot was generated from the ORIGINAL presets and loader (commit 61c1580, before the presets became
overlays, `base: [xstilts_<task>, freelb]`), so this test proves that restructuring the preset files
changed no effective config. It fails when any preset's resolved config (defaults filled in, validated)
changes, when a preset appears or disappears, or when a preset that failed validation starts passing.

The snapshot holds `phases.<phase>.adversarial` in the old flat form (step_size, init_mag, max_norm,
weight for every method). Since each method has its own config, the test converts the recorded sections
with the documented old -> new mapping (docs/ADVERSARIAL.md, "The old flat form"), written out below
independently of xrobust's code, so it still proves that the effective values are the same.

Regenerate the snapshot ONLY for an intended change to a preset's effective config, and review the diff:
    .venv/bin/python tests/test_config_presets.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from xrobust.config import load_config, preset_names, resolve_config_path, to_dict
from xrobust.errors import ConfigError
from xrobust.io import atomic_write_text

SNAPSHOT = Path(__file__).parent / "data" / "preset_configs.json"

# Per method of the shipped presets: the old flat keys it reads, in the order of its config's keys, and
# their names in its config. The other flat keys were never read by that method.
_COMMON = [("start_step", "start_step"), ("backend", "backend")]
OLD_TO_NEW = {
    "none": [("method", "method")],
    "freelb": [("method", "method"), ("steps", "steps"), ("step_size", "alpha"), ("init_mag", "sigma"),
               ("max_norm", "epsilon"), ("norm", "norm"), ("reuse_dropout_masks", "reuse_dropout_masks"),
               *_COMMON, ("coalesce", "coalesce")],
    "smart": [("method", "method"), ("steps", "steps"), ("step_size", "eta"), ("init_mag", "sigma"),
              ("max_norm", "epsilon"), ("norm", "norm"), ("weight", "lambda_s"),
              ("ascent_divergence", "ascent_divergence"), *_COMMON],
}


def converted(recorded: dict) -> dict:
    """A recorded preset entry with every old flat `adversarial` section in its method's keys."""
    for phase in recorded.get("config", {}).get("phases", {}).values():
        flat = phase["adversarial"]
        if "step_size" in flat:  # the old flat form
            phase["adversarial"] = {new: flat[old] for old, new in OLD_TO_NEW[flat["method"]]}
    return recorded


def resolve_presets() -> dict:
    """{preset: {"config": resolved mapping}} or, for a preset that is not run alone (a base such as
    xstilts_base), {preset: {"error": its ConfigError with the file shown as <preset>}}."""
    out = {}
    for name in preset_names():
        try:
            out[name] = {"config": to_dict(load_config(name))}
        except ConfigError as exc:
            out[name] = {"error": str(exc).replace(str(resolve_config_path(name)), "<preset>")}
    return json.loads(json.dumps(out))  # the types JSON keeps, as in the snapshot


def _differences(old, new, where="") -> list[str]:
    """Dotted keys whose values differ; 1 and 1.0 differ, and so does the order of a mapping's keys
    (phases run in their mapping order)."""
    if isinstance(old, dict) and isinstance(new, dict):
        reordered = list(old) != list(new) and set(old) == set(new)
        order = [f"{where}: key order {list(old)} -> {list(new)}"] if reordered else []
        return order + [d for k in sorted(set(old) | set(new)) for d in
                        _differences(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{where}.{k}" if where else k)]
    return [] if json.dumps(old) == json.dumps(new) else [f"{where}: {old!r} -> {new!r}"]


def test_every_shipped_preset_resolves_as_recorded():
    recorded = {name: converted(entry) for name, entry in json.loads(SNAPSHOT.read_text(encoding="utf-8")).items()}
    current = resolve_presets()
    assert sorted(current) == sorted(recorded), "the set of listed presets changed"
    problems = [f"{name}: {d}" for name in sorted(recorded) for d in _differences(recorded[name], current[name])]
    assert not problems, "resolved presets changed:\n" + "\n".join(problems)


def test_the_snapshot_covers_the_adversarial_variants():
    # guards against a regenerated snapshot that silently lost the presets this test is about
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    for method in ("freelb", "smart"):
        variants = [n for n in recorded if n.endswith(f"_{method}")]
        assert len(variants) == 10
        for name in variants:
            assert recorded[name]["config"]["phases"]["intermediate"]["adversarial"]["method"] == method


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(SNAPSHOT, json.dumps(resolve_presets(), indent=1) + "\n")
    print(f"wrote {SNAPSHOT}")
