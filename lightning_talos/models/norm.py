"""GroupNorm variants of the backbones, for per-sample gradients (DP-SGD).

BatchNorm mixes the samples of a batch, so a sample's gradient depends on the others and
per-sample clipping bounds nothing; DP-SGD needs a normalisation that works per sample.
GroupNorm (Wu & He, 2018) is the usual replacement. Opacus' ``ModuleValidator.fix`` uses
``min(32, C)`` groups, which turns narrow layers (``small_cnn``'s 16 channels) into instance
norm; :func:`num_groups` keeps at least 4 channels per group instead and caps the count at 32.

Opacus computes per-sample gradients with full backward hooks on every layer with parameters;
an in-place activation right after such a layer (torchvision's ``ReLU(inplace=True)``) edits a
view the hook returned, which autograd forbids. :func:`dp_compatible` therefore also makes
activations out of place (same values, one more buffer).
"""

from __future__ import annotations

from torch import nn

from lightning_talos.models.backbones import build_backbone


def num_groups(channels: int, *, max_groups: int = 32, min_group_size: int = 4) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` and leaves at least
    ``min_group_size`` channels per group (1 when none does).

    Examples: 16 -> 4, 32 -> 8, 64 -> 16, 96 -> 24, 144 -> 24, 512 -> 32.

    Raises:
        ValueError: If a setting is below 1.
    """
    if min(channels, max_groups, min_group_size) < 1:
        raise ValueError("channels, max_groups and min_group_size must be >= 1")
    limit = min(max_groups, channels // min_group_size)
    for groups in range(limit, 1, -1):
        if channels % groups == 0:
            return groups
    return 1


def replace_batchnorm(module: nn.Module, **group_settings: int) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` in ``module`` by a freshly initialised GroupNorm.

    Works in place on child modules and returns ``module`` (or the replacement when ``module``
    itself is a BatchNorm). ``eps`` and ``affine`` are kept; running statistics are dropped
    (GroupNorm has none), and weights start at 1/0 as a new layer would: the backbones here are
    randomly initialised, so nothing is lost.

    Args:
        module: Any module.
        **group_settings: ``max_groups`` / ``min_group_size`` of :func:`num_groups`.
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        channels = module.num_features
        return nn.GroupNorm(
            num_groups(channels, **group_settings), channels, eps=module.eps, affine=module.affine
        )
    for name, child in module.named_children():
        setattr(module, name, replace_batchnorm(child, **group_settings))
    return module


def no_inplace(module: nn.Module) -> nn.Module:
    """Set ``inplace=False`` on every submodule that has the flag (ReLU, ReLU6, Dropout...);
    returns ``module``."""
    for sub in module.modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
    return module


def dp_compatible(module: nn.Module, **group_settings: int) -> nn.Module:
    """:func:`replace_batchnorm` then :func:`no_inplace`: a module Opacus' per-sample hooks
    accept (``ModuleValidator.validate(module, strict=True)`` passes for every backbone)."""
    return no_inplace(replace_batchnorm(module, **group_settings))


def build_groupnorm_backbone(name: str, *, stem: str = "imagenet") -> tuple[nn.Module, int]:
    """:func:`~lightning_talos.models.backbones.build_backbone` made :func:`dp_compatible`
    (GroupNorm for BatchNorm, out-of-place activations).

    Returns:
        ``(module, d)`` as ``build_backbone``: ``[B, 3, H, W]`` in [0, 1] to ``[B, d]``.

    Raises:
        ValueError: If ``name`` or ``stem`` is unknown.
    """
    net, dim = build_backbone(name, stem=stem)
    return dp_compatible(net), dim
