"""What a run writes besides models: atomic JSON, manifests, the provenance of code and machine."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from lightning_talos.config.load import hash_dict
from lightning_talos.runs.jobenv import job_fields

#: Where a stage keeps its resumable checkpoint, relative to the stage folder.
LAST = Path("checkpoints") / "last.ckpt"


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
