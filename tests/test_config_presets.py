"""Every shipped preset resolves to the config recorded in tests/data/preset_configs.json.

The snapshot was generated from the ORIGINAL presets and loader (commit 61c1580, before the presets became
overlays, `base: [xstilts_<task>, freelb]`), so this test proves that restructuring the preset files
changed no effective config. It fails when any preset's resolved config (defaults filled in, validated)
changes, when a preset appears or disappears, or when a preset that failed validation starts passing.

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
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
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
