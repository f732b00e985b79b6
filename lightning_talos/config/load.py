"""Compose a run's config: dataclass defaults <- group YAMLs <- experiment preset <- CLI dot-list.

Group selections (``data=cifar10``, ``model=resnet18_cifar``, ``trainer=gpu``, ``logger=offline``,
``launcher=slurm``)
load ``configs/<group>/<name>.yaml`` into that section. ``experiment=NAME`` loads
``configs/experiment/NAME.yaml``, whose optional ``defaults:`` mapping selects groups the same way
(and ``experiment: BASE`` in it extends another preset: the base's groups and keys first, this
preset's on top), and whose other keys override them. Everything else on the command line is an
OmegaConf dot-list, and it always wins: ``trainer.max_epochs=N`` given there applies to every stage
unless the stage's own ``<section>.max_epochs`` is given there too.
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
from lightning_talos.config.schema import Config
from lightning_talos.errors import UserError

GROUPS = ("data", "model", "trainer", "logger", "launcher")


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


def _load_preset(name: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, str], DictConfig]:
    """A preset's group selections and keys, with the presets it extends merged underneath.

    Raises:
        UserError: unknown preset or group, or a preset that extends itself.
    """
    if name in seen:
        raise UserError(f"experiment presets extend each other in a cycle: {' -> '.join(seen)}")
    preset = _load_yaml("experiment", name)
    defaults = {str(k): str(v) for k, v in dict(preset.pop("defaults", None) or {}).items()}
    base = defaults.pop("experiment", None)
    unknown = set(defaults) - set(GROUPS)
    if unknown:
        raise UserError(f"experiment '{name}' defaults name unknown groups {sorted(unknown)}")
    if base is None:
        return defaults, preset
    base_groups, base_keys = _load_preset(base, (*seen, name))
    return {**base_groups, **defaults}, _merge(base_keys, preset)


def _stage_epoch_keys(cfg: DictConfig) -> list[str]:
    """Dotted ``<section>.max_epochs`` keys of the sections that have their own epochs."""
    return [
        f"{key}.max_epochs"
        for key, node in cfg.items()
        if isinstance(node, DictConfig) and key != "trainer" and "max_epochs" in node
    ]


def _cli_precedence(cfg: DictConfig, cli: DictConfig) -> DictConfig:
    """Let a command-line ``trainer.max_epochs`` reach every stage whose own epochs a preset set
    and the command line did not."""
    if OmegaConf.select(cli, "trainer.max_epochs") is None:
        return cfg
    reset = {key: None for key in _stage_epoch_keys(cfg) if OmegaConf.select(cli, key) is None}
    return _merge(cfg, OmegaConf.from_dotlist([f"{k}=null" for k in reset]))


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
        preset_groups, preset = _load_preset(groups["experiment"])
    cli_groups = {k: v for k, v in groups.items() if k != "experiment"}
    cfg = _merge(cfg, _group_layer(preset_groups), preset, _group_layer(cli_groups))
    try:
        cli = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as err:
        raise UserError(f"cannot parse overrides: {str(err).splitlines()[0]}") from None
    cfg = _cli_precedence(_merge(cfg, cli), cli)
    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Check values the types cannot (``config/checks.py``; fixed choices are enums, checked
    during the merge).

    Raises:
        UserError: naming the key.
    """
    check_config(cfg)


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """Plain, resolved container of a config (or of one section)."""
    out = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def hash_dict(payload: Any) -> str:
    """Stable short hash of JSON-able data."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
