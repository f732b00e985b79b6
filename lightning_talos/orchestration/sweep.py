"""``lightning-talos sweep NAME``: one audit per setting of ``configs/sweeps/NAME.yaml``.

A sweep file lists the overrides every run shares (``base``), the folder the runs go to
(``run_dir``) and the settings, each a ``label`` and its ``overrides``. Every setting is an
ordinary audit, ``run.dir=<run_dir> run.name=<setting's slug>``, so a finished setting is
skipped and an interrupted one resumes; ``<run_dir>/sweep.json`` lists the settings in order
for the README's table (``report/readme_blocks.py``). Later ``key=value`` arguments apply to
every run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lightning_talos.config.load import config_dir
from lightning_talos.errors import UserError

SWEEP_FILE = "sweep.json"
_KEYS = {"run_dir", "base", "settings"}


def sweep_path(name: str) -> Path:
    """``configs/sweeps/<name>.yaml``.

    Raises:
        UserError: naming the sweeps that exist when ``name`` is not one.
    """
    folder = config_dir() / "sweeps"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise UserError(f"no sweep {name!r}; valid: {', '.join(known) or 'none'}")
    return path


def slug(label: str) -> str:
    """A run name from a setting's label: lower case, runs of other characters as ``-``."""
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-")


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep file, checked: ``run_dir``, ``base`` (overrides) and ``settings``.

    Raises:
        UserError: for a missing or unknown key, a setting without label, or two settings
            with the same run name.
    """
    raw = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        raise UserError(f"{path}: a sweep has exactly the keys {', '.join(sorted(_KEYS))}")
    settings = []
    for item in raw["settings"]:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            raise UserError(f"{path}: every setting needs a label and a list of overrides")
        overrides = [str(o) for o in item.get("overrides") or []]
        settings.append(
            {"label": item["label"], "run": slug(item["label"]), "overrides": overrides}
        )
    runs = [s["run"] for s in settings]
    if len(set(runs)) != len(runs) or not runs:
        raise UserError(f"{path}: settings need distinct labels (run names {runs})")
    return {"run_dir": str(raw["run_dir"]), "base": [str(b) for b in raw["base"]],
            "settings": settings}  # fmt: skip


def run_sweep(
    name: str, extra: Sequence[str], audit: Callable[[list[str]], None]
) -> list[list[str]]:
    """Run ``audit`` once per setting of sweep ``name`` and write ``<run_dir>/sweep.json``.

    Args:
        name: The sweep (``configs/sweeps/<name>.yaml``).
        extra: Overrides added to every run (after the setting's own).
        audit: Runs one audit from its overrides (the CLI's).

    Returns:
        Each run's overrides, in order.
    """
    sweep = load_sweep(sweep_path(name))
    run_dir = Path(sweep["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    listing = {"sweep": name, **sweep}
    (run_dir / SWEEP_FILE).write_text(json.dumps(listing, indent=2) + "\n")
    done = []
    for setting in sweep["settings"]:
        args = [*sweep["base"], *setting["overrides"], *extra,
                f"run.dir={run_dir}", f"run.name={setting['run']}"]  # fmt: skip
        audit(args)
        done.append(args)
    return done
