"""The files xrobust ships beside its code: DeepSpeed configs and sbatch templates, one copy each.

Their sources are the top-level `ds_configs/` and `slurm/` folders, where users read and copy them.
A wheel installs them as package data inside xrobust (setup.py maps them to `xrobust/ds_configs/`
and `xrobust/launch/templates/`); a source checkout (the editable install) reads them in place.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# folder in the source tree -> where a wheel puts it inside the package (keep in step with setup.py)
INSTALLED_AS = {"ds_configs": "ds_configs", "slurm": "launch/templates"}


def shipped_folder(name: str) -> Path:
    """`ds_configs` or `slurm`: the installed copy when this is a wheel install, else the source folder."""
    for folder in (_PACKAGE / INSTALLED_AS[name], _PACKAGE.parent / name):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"xrobust's {name}/ folder is missing: looked in {_PACKAGE / INSTALLED_AS[name]} "
                            f"(installed package) and {_PACKAGE.parent / name} (source checkout); reinstall xrobust")
