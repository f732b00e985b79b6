"""Run directories, manifests and the rules for reusing, resuming or refusing a stage."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_talos.config.load import hash_dict, to_dict
from lightning_talos.errors import UserError
from lightning_talos.pipeline.jobenv import job_fields

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


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's manifest, or None when it has none.

    Raises:
        UserError: when the manifest exists but is not valid JSON.
    """
    path = stage_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"corrupt manifest {path}: {err}; remove the folder to retrain") from None


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (a kill mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def git_commit() -> str | None:
    """The commit of the code that produced a result (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import pytorch_lightning
    import torch
    import torchvision

    from lightning_talos import __version__

    return {
        "lightning_talos": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
    }


def machine_info() -> dict[str, Any]:
    """The machine a result was computed on: CPU model, cores, torch's CPU kernels, GPU."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def check_reusable(manifest: dict[str, Any], config: dict[str, Any], where: Path) -> None:
    """Refuse to touch a run made with other settings.

    Raises:
        UserError: naming the keys that differ.
    """
    diff = config_diff(manifest.get("config", {}), config)
    if diff:
        raise UserError(
            f"{where} was made with other settings (differs in: {', '.join(diff)}); "
            "use a new run.name, or run.resume=never to replace it"
        )


def new_manifest(
    stage: str, role: str | None, config: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """A fresh manifest for a stage that is starting."""
    return {
        "stage": stage,
        "role": role,
        "status": "running",
        "config": config,
        "config_hash": hash_dict(config),
        "git_commit": git_commit(),
        "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "started_unix": time.time(),  # orders stages that ran side by side (launchers)
        **job_fields(),
        **fields,
    }


def save_config(cfg: DictConfig, stage_dir: Path) -> None:
    """The resolved config beside the stage's outputs."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    tmp = stage_dir / "config.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, stage_dir / "config.yaml")


def require_done(stage_dir: Path, rebuild: str) -> dict[str, Any]:
    """The manifest of a finished stage.

    Raises:
        UserError: when it is missing or unfinished, naming the command ``rebuild`` that makes it.
    """
    manifest = read_manifest(stage_dir)
    if manifest is None or manifest.get("status") != "done":
        raise UserError(
            f"{stage_dir.name} is missing or unfinished in {stage_dir.parent}; "
            f"make it first: {rebuild} (with the same settings)"
        )
    return manifest


def decide(
    manifest: dict[str, Any] | None,
    *,
    config: dict[str, Any],
    inputs: dict[str, str],
    split_hash: str,
    resume: str,
    where: Path,
    epochs: int | None = None,
    output: Path | None = None,
) -> str:
    """``fresh``, ``resume`` or ``done`` for a stage about to run (training or attack).

    A stage is ``done`` when it finished with the same config, splits and inputs (and, for a
    training stage, at least ``epochs`` epochs; for an attack stage, with its ``output`` file
    present); an unfinished training stage (``epochs`` given) resumes; anything else is
    ``fresh``, and so is everything with ``resume=never``.

    Raises:
        UserError: when the stage was made with other settings or other splits.
    """
    if resume == "never" or manifest is None:
        return "fresh"
    check_reusable(manifest, config, where)
    if manifest.get("split_hash") != split_hash:
        raise UserError(f"{where} was trained on other splits; use a new run.name")
    if manifest.get("inputs", {}) != inputs:
        return "fresh"  # an upstream stage was re-run: never reuse what was built on the old one
    finished = manifest.get("status") == "done"
    if epochs is None:
        return "done" if finished and (output is None or output.is_file()) else "fresh"
    if finished and manifest.get("epochs_completed", 0) >= epochs:
        return "done"
    return "resume"
