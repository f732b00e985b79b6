"""What identifies a run and a stage's result: the run's folder, the part of the config a stage's
result depends on, and the keys in which two such configs differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lightning_talos.config.load import to_dict

#: Keys that never change a result (where data lives, how fast it loads, what is logged).
RUNTIME_KEYS = (
    "data.root",
    "data.num_workers",
    "data.cache_dir",
    "data.download",
    "data.verify_checksums",
    "data.eval_batch_size",
)
#: Keys whose effect a stage's inputs already record: the number of reference models (their
#: completion ids are inputs of the attacks that read them), so raising it re-runs those
#: attacks on the new references instead of refusing the run.
INPUT_KEYS = ("mia.references",)


def run_root(cfg: DictConfig) -> Path:
    """``<run.dir>/<run.name>``."""
    return Path(cfg.run.dir).expanduser() / cfg.run.name


def stage_config(cfg: DictConfig, sections: tuple[str, ...]) -> dict[str, Any]:
    """The part of the config a stage's result depends on (``seed``, ``data`` and its
    ``sections``); epochs are compared separately."""
    full = to_dict(cfg)
    out: dict[str, Any] = {"seed": full["seed"], "data": full["data"]}
    for section in sections:
        out[section] = full[section]
    for key in (*RUNTIME_KEYS, *INPUT_KEYS):
        section, leaf = key.split(".")
        out.get(section, {}).pop(leaf, None)
    for section in out.values():
        if isinstance(section, dict):
            section.pop("max_epochs", None)
    return out


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        diffs: list[str] = []
        for key in keys:
            diffs += config_diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return diffs
    return [] if old == new else [prefix.rstrip(".")]
