"""Compose a run's config: dataclass defaults <- group YAMLs <- experiment preset <- CLI dot-list.

Group selections (``data=cifar10``, ``model=resnet18_cifar``, ``trainer=gpu``, ``logger=offline``)
load ``configs/<group>/<name>.yaml`` into that section. ``experiment=NAME`` loads
``configs/experiment/NAME.yaml``, whose optional ``defaults:`` mapping selects groups the same way
and whose other keys override them. Everything else on the command line is an OmegaConf dot-list.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from lightning_talos.config.checks import check_config
from lightning_talos.config.schema import CHOICES, LIST_CHOICES, Config
from lightning_talos.errors import UserError

GROUPS = ("data", "model", "trainer", "logger")


def config_dir() -> Path:
    """The ``configs/`` folder: ``$LIGHTNING_TALOS_CONFIGS``, the repo's, or ``./configs``."""
    env = os.environ.get("LIGHTNING_TALOS_CONFIGS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "configs"
    return repo if repo.is_dir() else Path.cwd() / "configs"


def available(group: str) -> list[str]:
    """Names of the YAML files of one config group."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _load_yaml(group: str, name: str) -> DictConfig:
    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown {group} '{name}'; valid: {', '.join(available(group))}")
    node = OmegaConf.load(path)
    if not isinstance(node, DictConfig):
        raise UserError(f"{path} must hold a mapping")
    return node


def _split_args(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Separate group selections (``group=name``) from dot-list overrides."""
    groups: dict[str, str] = {}
    dotlist: list[str] = []
    for arg in args:
        if "=" not in arg:
            raise UserError(f"expected key=value, got '{arg}'")
        key, value = arg.split("=", 1)
        if key in GROUPS or key == "experiment":
            groups[key] = value
        else:
            dotlist.append(arg)
    return groups, dotlist


def _merge(base: DictConfig, *others: Any) -> DictConfig:
    try:
        merged = OmegaConf.merge(base, *others)
    except OmegaConfBaseException as err:
        raise UserError(_describe(err)) from None
    assert isinstance(merged, DictConfig)  # merging mappings gives a mapping
    return merged


def _describe(err: OmegaConfBaseException) -> str:
    """One line naming the key and, for unknown keys, the valid ones."""
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
    if isinstance(err, ConfigKeyError):
        parent, _, leaf = str(key).rpartition(".")
        valid = _valid_keys(parent)
        where = f"under '{parent}'" if parent else "at the top level"
        return f"unknown config key '{key}'; valid keys {where}: {', '.join(valid)}"
    if isinstance(err, ValidationError):
        message = str(getattr(err, "msg", err)).splitlines()[0]
        return f"invalid value for '{key}': {message}"
    return f"config error at '{key}': {str(err).splitlines()[0]}"


def _valid_keys(parent: str) -> list[str]:
    node: Any = OmegaConf.structured(Config)
    for part in filter(None, parent.split(".")):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return sorted(str(k) for k in node) if isinstance(node, DictConfig) else []


def _group_layer(groups: dict[str, str]) -> DictConfig:
    layer = OmegaConf.create()
    for group in GROUPS:
        if group in groups:
            layer = OmegaConf.merge(layer, {group: _load_yaml(group, groups[group])})
    return layer


def compose(args: Iterable[str] = ()) -> DictConfig:
    """Build, validate and freeze the config for the command-line ``args``.

    Raises:
        UserError: unknown key, wrong type, invalid choice, unknown group or preset.
    """
    groups, dotlist = _split_args(list(args))
    cfg = OmegaConf.structured(Config)
    preset_groups: dict[str, str] = {}
    preset = OmegaConf.create()
    if "experiment" in groups:
        preset = _load_yaml("experiment", groups["experiment"])
        defaults = preset.pop("defaults", None) or {}
        preset_groups = {str(k): str(v) for k, v in dict(defaults).items()}
        unknown = set(preset_groups) - set(GROUPS)
        if unknown:
            raise UserError(f"experiment defaults name unknown groups {sorted(unknown)}")
    cli_groups = {k: v for k, v in groups.items() if k != "experiment"}
    cfg = _merge(cfg, _group_layer(preset_groups), preset, _group_layer(cli_groups))
    try:
        cli = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as err:
        raise UserError(f"cannot parse overrides: {str(err).splitlines()[0]}") from None
    cfg = _merge(cfg, cli)
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Check the fixed-choice settings, then values (``config/checks.py``).

    Raises:
        UserError: naming the key and the valid choices.
    """
    check_config(cfg)
    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if str(value) not in choices:
            raise UserError(f"invalid value '{value}' for '{key}'; valid: {', '.join(choices)}")
    for key, choices in LIST_CHOICES.items():
        for value in OmegaConf.select(cfg, key):
            if value not in choices:
                raise UserError(f"invalid item '{value}' in '{key}'; valid: {', '.join(choices)}")
    positive = ("data.image_size", "data.batch_size", "trainer.max_epochs")
    for key in positive:
        if OmegaConf.select(cfg, key) <= 0:
            raise UserError(f"'{key}' must be positive, got {OmegaConf.select(cfg, key)}")


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """Plain, resolved container of a config (or of one section)."""
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def hash_dict(payload: Any) -> str:
    """Stable short hash of JSON-able data."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)
