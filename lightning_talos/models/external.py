"""Encoders trained outside this framework: checkpoints of torchvision, timm, lightly, solo-learn.

:func:`load_external_encoder` rebuilds the architecture, loads the weights strictly (every key
of the architecture present, no key left over) from a file read with ``weights_only=True``, and
returns a module mapping images in ``[0, 1]`` to the pooled embedding ``h`` (classification head
removed). What each format means:

* ``torchvision``: a torchvision classification model's ``state_dict`` (its head, ``fc`` /
  ``classifier`` / ``heads``, is dropped), e.g. ``torch.save(model.state_dict(), path)``.
* ``timm``: the ``state_dict`` of ``timm.create_model(arch)``, built with ``num_classes=0``
  (the classifier named by the model's config is dropped). Needs ``pip install -e '.[byo]'``.
* ``lightly``: lightly's usual backbone, ``nn.Sequential(*list(resnet.children())[:-1])`` of a
  torchvision model (keys ``0.weight``, ``4.0.conv1.weight``, ...), saved bare or inside a
  Lightning checkpoint under ``backbone.``.
* ``solo_learn``: solo-learn's Lightning checkpoint: the torchvision backbone under
  ``backbone.`` (``fc`` replaced by identity), with solo-learn's CIFAR stem (3x3 stride-1
  ``conv1``, padding 2, no max-pool) when ``conv1`` is 3x3.
* ``lightning``: any Lightning checkpoint whose ``state_dict`` holds the backbone under a prefix
  (``encoder.key_prefix``, else the first of :data:`PREFIXES` present).
* ``state_dict``: a bare state dict of ``arch`` (torchvision, else timm).

``auto`` reads the keys: a Lightning checkpoint or a bare dict, numbered ``nn.Sequential`` keys
(lightly) or named ones, and a ``backbone.`` prefix with named keys (solo-learn).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from lightning_talos.errors import UserError
from lightning_talos.safe_load import file_digest, load_checkpoint

FORMATS: tuple[str, ...] = (
    "auto", "torchvision", "timm", "lightly", "solo_learn", "lightning", "state_dict",
)  # fmt: skip
#: Prefixes ``auto`` looks for in a Lightning checkpoint's ``state_dict``, in this order.
PREFIXES: tuple[str, ...] = ("backbone.", "encoder.", "model.", "net.", "module.")
#: Attributes holding a torchvision model's classification head, in the order they are looked for.
_HEADS: tuple[str, ...] = ("fc", "classifier", "heads", "head")
#: ImageNet channel statistics (torchvision's, lightly's and solo-learn's default normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BYO_EXTRA = "pip install -e '.[byo]'"


@dataclass
class ExternalEncoder:
    """A loaded encoder and what was chosen to load it.

    Attributes:
        module: maps images ``[B, 3, H, W]`` in ``[0, 1]`` to embeddings ``[B, dim]`` (eval mode).
        dim: embedding width.
        format: the format used (``auto`` resolved).
        description: one line: format, architecture, prefix, stem, dropped head keys.
        sha256: digest of the checkpoint file.
    """

    module: nn.Module
    dim: int
    format: str
    description: str
    sha256: str


class Embedder(nn.Module):
    """Normalise ``[0, 1]`` pixels with the encoder's statistics, embed, flatten to ``[B, d]``."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, d]``."""
        return self.net((x - self.mean) / self.std).flatten(1)


def _timm():  # noqa: ANN202 (the optional module)
    try:
        import timm
    except ImportError:
        raise UserError(f"encoder.format=timm needs the timm package: {BYO_EXTRA}") from None
    return timm


def config_globals() -> list[object]:
    """Classes ``weights_only`` may rebuild besides tensors: OmegaConf's config containers and
    nodes (solo-learn keeps its ``DictConfig`` in ``hyper_parameters``) and the plain types
    they name. Unpickling them sets attributes and calls no user code; nothing else is
    admitted."""
    import collections
    import typing

    from omegaconf import base, dictconfig, listconfig, nodes

    node_types = [c for c in vars(nodes).values() if isinstance(c, type) and
                  issubclass(c, base.Node)]  # fmt: skip
    return [
        dictconfig.DictConfig, listconfig.ListConfig, base.ContainerMetadata, base.Metadata,
        *node_types, typing.Any, collections.defaultdict, dict, list, tuple, set, int, float,
        str, bool,
    ]  # fmt: skip


def _read(path: Path) -> dict:
    with torch.serialization.safe_globals(config_globals()):
        return load_checkpoint(path)


def torchvision_archs() -> list[str]:
    """Names of torchvision's classification architectures."""
    return sorted(tvm.list_models(module=tvm))


def _unwrap(ckpt: dict, path: Path) -> tuple[dict[str, Tensor], bool]:
    """The tensors of a checkpoint and whether they came from a Lightning ``state_dict``."""
    for key in ("state_dict", "model"):
        if isinstance(ckpt.get(key), dict):
            return dict(ckpt[key]), key == "state_dict"
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        return dict(ckpt), False
    raise UserError(
        f"{path} is neither a state dict nor a checkpoint with a 'state_dict'; "
        f"top-level keys: {', '.join(list(ckpt)[:5])}"
    )


def _prefixes(state: dict[str, Tensor]) -> list[str]:
    return sorted({k.split(".", 1)[0] + "." for k in state if "." in k})


def _strip(state: dict[str, Tensor], prefix: str, path: Path) -> dict[str, Tensor]:
    if not prefix:
        return state
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise UserError(
            f"no key of {path} starts with '{prefix}'; prefixes present: "
            f"{', '.join(_prefixes(state)[:8]) or 'none'} (set encoder.key_prefix)"
        )
    return out


def _auto_prefix(state: dict[str, Tensor], lightning: bool) -> str:
    present = _prefixes(state)
    if lightning:
        return next((p for p in PREFIXES if p in present), "")
    return "module." if present == ["module."] else ""  # a DDP-wrapped model saved bare


def _numbered(state: dict[str, Tensor]) -> bool:
    return bool(state) and all(k.split(".", 1)[0].isdigit() for k in state)


def _resolve_format(
    fmt: str, arch: str, state: dict[str, Tensor], lightning: bool, prefix: str
) -> str:
    """``auto`` -> the format the keys and ``arch`` point at.

    Raises:
        UserError: ``arch`` is not a torchvision model and timm is not installed.
    """
    if fmt != "auto":
        return fmt
    if _numbered(state):
        return "lightly"
    if arch not in torchvision_archs():
        try:
            _timm()
        except UserError:
            raise UserError(
                f"unknown architecture '{arch}': not a torchvision model (for a timm model "
                f"install timm: {BYO_EXTRA})"
            ) from None
        return "timm"
    if lightning:
        return "solo_learn" if prefix == "backbone." else "lightning"
    return "torchvision"


def _stem_kernel(state: dict[str, Tensor], numbered: bool) -> int | None:
    weight = state.get("0.weight" if numbered else "conv1.weight")
    return int(weight.shape[-1]) if weight is not None and weight.dim() == 4 else None


def _torchvision_net(arch: str, cifar_padding: int | None) -> nn.Module:
    if arch not in torchvision_archs():
        raise UserError(
            f"unknown architecture '{arch}'; torchvision has e.g. resnet18, resnet50, "
            "mobilenet_v2, vit_b_16 (or a timm name with encoder.format=timm)"
        )
    net = tvm.get_model(arch, weights=None)
    if cifar_padding is not None:
        if not hasattr(net, "conv1") or not hasattr(net, "maxpool"):
            raise UserError(f"a 3x3 CIFAR stem is only known for ResNets, not '{arch}'")
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=cifar_padding, bias=False)
        net.maxpool = nn.Identity()
    return net


def _drop_head(net: nn.Module) -> str:
    """Replace a torchvision model's classification head by identity; returns its name."""
    for name in _HEADS:
        if isinstance(getattr(net, name, None), nn.Module):
            setattr(net, name, nn.Identity())
            return name
    raise UserError(f"cannot find the classification head of {type(net).__name__}")


def _without(state: dict[str, Tensor], head: str) -> tuple[dict[str, Tensor], int]:
    kept = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    return kept, len(state) - len(kept)


def _build(
    fmt: str, arch: str, state: dict[str, Tensor], stem: str
) -> tuple[nn.Module, dict[str, Tensor], str]:
    """The architecture of ``fmt`` and the state dict it loads; plus what was done (text)."""
    if fmt in ("state_dict", "lightning", "solo_learn") and arch not in torchvision_archs():
        fmt = "timm"  # e.g. solo-learn's ViTs are timm models
    if fmt in ("state_dict", "lightning"):
        fmt = "torchvision"
    if fmt == "timm":
        timm = _timm()
        if not timm.is_model(arch):
            raise UserError(f"unknown architecture '{arch}' (neither torchvision nor timm has it)")
        net = timm.create_model(arch, pretrained=False, num_classes=0)
        head = (net.pretrained_cfg or {}).get("classifier") or ""
        state, dropped = _without(state, head) if head else (state, 0)
        return net, state, f"timm {arch}, num_classes=0" + _dropped(head, dropped)
    numbered = fmt == "lightly"
    if numbered and not _numbered(state):
        raise UserError(
            "encoder.format=lightly expects nn.Sequential keys (0.weight, 4.0.conv1.weight, ...); "
            f"this checkpoint has {', '.join(list(state)[:3])}"
        )
    kernel = _stem_kernel(state, numbered)
    cifar = stem == "cifar" or (stem == "auto" and kernel == 3)
    padding = (2 if fmt == "solo_learn" else 1) if cifar else None
    net = _torchvision_net(arch, padding)
    stem_text = f", CIFAR stem (3x3 conv, padding {padding}, no max-pool)" if cifar else ""
    if numbered:
        seq = nn.Sequential(*list(net.children())[:-1])  # lightly drops the last child (fc)
        what = f"lightly nn.Sequential of torchvision {arch} without its head{stem_text}"
        return seq, state, what
    head = _drop_head(net)
    state, dropped = _without(state, head)
    return net, state, f"torchvision {arch}{stem_text}" + _dropped(head, dropped)


def _dropped(head: str, n: int) -> str:
    return f", head '{head}' dropped ({n} keys)" if n else ""


def _load_strict(net: nn.Module, state: dict[str, Tensor], path: Path, what: str) -> None:
    """Load every key or raise one line naming the first missing and unexpected keys."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserError(
            f"{path} does not fit {what}: missing keys: {_list(missing)}; "
            f"unexpected keys: {_list(unexpected)}"
        )
    wrong = [k for k in expected if expected[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise UserError(
            f"{path} does not fit {what}: {len(wrong)} keys differ in shape, first "
            f"'{k}': checkpoint {list(state[k].shape)}, model {list(expected[k].shape)}"
        )
    net.load_state_dict(state, strict=True)


def _list(keys: list[str], n: int = 4) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


@torch.no_grad()
def _width(module: nn.Module, image_size: int) -> int:
    return int(module(torch.zeros(2, 3, image_size, image_size)).shape[1])


def load_external_encoder(
    path: Path,
    *,
    fmt: str = "auto",
    arch: str = "resnet18",
    key_prefix: str | None = None,
    stem: str = "auto",
    normalize: str = "imagenet",
    image_size: int = 32,
) -> ExternalEncoder:
    """Rebuild and strictly load an encoder checkpoint trained elsewhere.

    Args:
        path: the checkpoint (read with ``torch.load(weights_only=True)``, OmegaConf's config
            classes allowed (:func:`config_globals`): nothing in it runs).
        fmt: one of :data:`FORMATS` (module docstring).
        arch: torchvision or timm architecture name (``resnet18``, ``resnet50``, ...).
        key_prefix: prefix of the backbone's keys (``""``: none; ``None``: ``backbone.`` and the
            other :data:`PREFIXES` in a Lightning checkpoint, ``module.`` in a bare dict).
        stem: ``auto`` (CIFAR stem when the first conv is 3x3), ``imagenet`` or ``cifar``.
        normalize: ``imagenet`` (standardise with the ImageNet statistics first, as torchvision,
            lightly and solo-learn train) or ``none`` (pixels in [0, 1] as given).
        image_size: side of the images the encoder will see (to measure the embedding width).

    Returns:
        The :class:`ExternalEncoder`, in eval mode.

    Raises:
        UserError: unreadable file, unknown format or architecture, missing prefix, timm not
            installed, or keys that do not fit the architecture (one line, first keys named).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown encoder.format '{fmt}'; valid: {', '.join(FORMATS)}")
    ckpt = _read(path)
    state, lightning = _unwrap(ckpt, path)
    if fmt in ("lightning", "solo_learn") and not lightning:
        raise UserError(f"encoder.format={fmt} expects a Lightning checkpoint; {path} has none")
    if fmt == "solo_learn" and key_prefix is None:
        key_prefix = "backbone."
    prefix = _auto_prefix(state, lightning) if key_prefix is None else key_prefix
    if key_prefix is None and lightning and not prefix:
        raise UserError(
            f"{path} is a Lightning checkpoint without a known backbone prefix; prefixes "
            f"present: {', '.join(_prefixes(state)[:8])} (set encoder.key_prefix)"
        )
    state = _strip(state, prefix, path)
    fmt = _resolve_format(fmt, arch, state, lightning, prefix)
    net, state, what = _build(fmt, arch, state, stem)
    _load_strict(net, state, path, what)
    imagenet = normalize == "imagenet"
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else ((0.0,) * 3, (1.0,) * 3)
    module = Embedder(net, mean, std).eval()
    description = f"format={fmt}: {what}" + (f", keys under '{prefix}'" if prefix else "")
    return ExternalEncoder(
        module=module,
        dim=_width(module, image_size),
        format=fmt,
        description=description + f", normalize={normalize}",
        sha256=file_digest(path),
    )
