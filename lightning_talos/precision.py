"""Training precision that follows the hardware: ``trainer.precision=auto``.

On a CPU, bf16 autocast pays off only where the CPU computes in bf16 natively (AVX512-BF16 or
AMX): there `make bench` measured bf16 + channels-last at 1.8-2.5x the fp32 speed, while on AVX2
CPUs without them it ran about 8x *slower* (oneDNN emulates bf16). So ``auto`` picks
``bf16-mixed`` on CPUs with native bf16 and ``32-true`` otherwise. Any other value of
``trainer.precision`` (given on the command line or in a preset) is used as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

AUTO = "auto"
#: The instruction-set extensions that make bf16 native on x86 CPUs (``/proc/cpuinfo`` names).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def torch_cpu_capability() -> str:
    """The vector instruction set ATen dispatches to (``"AVX2"``, ``"AVX512"``, ``"DEFAULT"``)."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_bf16_flags() -> list[str]:
    """The native-bf16 extensions this CPU has (subset of :data:`BF16_FLAGS`).

    torch's own probes (``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``)
    are used when this torch has them, else the ``flags`` line of ``/proc/cpuinfo``.
    """
    probes = {
        "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", None),
        "amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", None),
    }
    if all(callable(p) for p in probes.values()):
        return [name for name, probe in probes.items() if probe()]
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = lines[0].split(":", 1)[1].split() if lines else []
    return [name for name in BF16_FLAGS if name in flags]


def resolve_precision(requested: str, accelerator: str) -> tuple[str, str]:
    """The Lightning precision to train with, and why.

    Args:
        requested: ``trainer.precision``: ``auto`` or an explicit Lightning precision
            (``32-true``, ``bf16-mixed``, ...), which is returned unchanged.
        accelerator: ``trainer.accelerator`` (``cpu``, ``gpu``, ``cuda``, ``auto``, ...).

    Returns:
        ``(precision, reason)``, e.g. ``("32-true", "auto: CPU without native bf16 (AVX2)")``.
    """
    if requested != AUTO:
        return requested, "explicit trainer.precision"
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", "auto: GPU with bf16 support"
        return "16-mixed", "auto: GPU without bf16 support"
    if accelerator not in ("cpu", "auto"):
        return "32-true", f"auto: no rule for accelerator {accelerator!r}, fp32"
    capability = torch_cpu_capability()
    flags = cpu_bf16_flags()
    # ATen must also dispatch to AVX-512 code (ATEN_CPU_CAPABILITY can cap it at AVX2).
    if flags and capability.upper().startswith(("AVX512", "AMX")):
        return "bf16-mixed", f"auto: CPU with native bf16 ({', '.join(flags)}; torch {capability})"
    return "32-true", f"auto: CPU without native bf16 (torch {capability}), fp32"


def precision_record(trainer: Any, requested: str | None = None) -> dict[str, str]:
    """``{"precision", "precision_reason"}`` for a manifest or ``results.json`` meta.

    Args:
        trainer: the ``trainer`` config section (``precision`` and ``accelerator`` are read).
        requested: a stage's own precision, which replaces ``trainer.precision`` (None: none).
    """
    wanted = str(requested or trainer.precision)
    precision, reason = resolve_precision(wanted, str(trainer.accelerator))
    return {"precision": precision, "precision_reason": reason}


#: Mixed precisions and the dtype their autocast computes in.
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class AutocastEval(torch.nn.Module):
    """A trained classifier queried at the precision it was trained and validated in.

    Lightning validates a ``bf16-mixed`` model under bf16 autocast; the attacks query the
    same model through this wrapper, so they see the labels and logits the model gives when
    it is evaluated (and, on a CPU with native bf16, about 3x faster than in fp32: the
    label-only attacks make most of an attack stage's forward passes). Outputs are float32.

    Args:
        model: a classifier with ``embed(images)`` and ``head(embedding)``.
        precision: a resolved Lightning precision (``32-true``: no autocast).
    """

    def __init__(self, model: torch.nn.Module, precision: str) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.dtype = AUTOCAST_DTYPES.get(precision)

    def _autocast(self, x: torch.Tensor) -> Any:
        return torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with self._autocast(images):
            return self.model.embed(images).float()

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        with self._autocast(embedding):
            return self.model.head(embedding).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))
