"""GroupNorm variants of the backbones, for per-sample gradients (DP-SGD).

BatchNorm mixes the samples of a batch, so a sample's gradient depends on the others and
per-sample clipping bounds nothing; DP-SGD needs a normalisation that works per sample.
GroupNorm (Wu & He, 2018) is the usual replacement. Opacus' ``ModuleValidator.fix`` uses
``min(32, C)`` groups, which turns narrow layers (``small_cnn``'s 16 channels) into instance
norm; :func:`num_groups` keeps at least 4 channels per group instead and caps the count at 32.

GroupNorm alone does not train the small CNN on the synthetic set: without DP it stays near
chance for most of 30 epochs (test accuracy 0.22 against 0.69 with BatchNorm, same recipe,
shadow role), whatever the final norm (GroupNorm convs with no final norm: 0.40 after 15
epochs; BatchNorm convs with the final GroupNorm: 0.73) and worse with more channels per group
(0.18 after 10 epochs at 32 per group); convs without any norm stay at chance (0.13). The likely
cause: a filter's response to the local mean of its input (inputs in [0, 1] and post-ReLU
features are far from zero mean) is an offset of its own per channel; BatchNorm removes it per
channel, GroupNorm only per group of channels, so the shape signal is a small residue beside
offsets that differ within each group (more channels per group: worse). Weight standardisation
(Qiao et al. 2019), zero-mean unit-variance filters as in De et al.'s (2022) DP-SGD networks,
makes every filter's response to a constant input zero: GroupNorm then trains like BatchNorm
(0.72 after 10 epochs, measured as above). :func:`dp_compatible` therefore
standardises every convolution (:class:`WSConv2d`; Opacus computes its per-sample gradients
with functorch, exactly).

Opacus computes per-sample gradients with full backward hooks on every layer with parameters;
an in-place activation right after such a layer (torchvision's ``ReLU(inplace=True)``) edits a
view the hook returned, which autograd forbids. :func:`dp_compatible` therefore also makes
activations out of place (same values, one more buffer).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

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


class WSConv2d(nn.Conv2d):
    """``Conv2d`` with weight standardisation: each output filter is used as
    ``(w - mean(w)) / sqrt(var(w) + eps)`` over its ``(in / groups, kh, kw)`` weights, so its
    response to a constant input is zero. Same parameters and state-dict keys as ``Conv2d``."""

    eps = 1e-5

    @classmethod
    def like(cls, conv: nn.Conv2d) -> WSConv2d:
        """A weight-standardised copy of ``conv``'s settings and parameters."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        new.load_state_dict(conv.state_dict())
        return new

    def standardised_weight(self) -> Tensor:
        """The filters used: ``[out, in / groups, kh, kw]``, each zero mean, unit variance."""
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) / (var + self.eps).sqrt()

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``[B, C, H, W]`` with the standardised filters."""
        if self.padding_mode != "zeros":
            return self._conv_forward(x, self.standardised_weight(), self.bias)
        return F.conv2d(
            x,
            self.standardised_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


def standardise_convs(module: nn.Module) -> nn.Module:
    """Replace every plain ``Conv2d`` in ``module`` by a :class:`WSConv2d` with its weights
    (in place on children; returns ``module``, or the replacement for a bare ``Conv2d``)."""
    if type(module) is nn.Conv2d:
        return WSConv2d.like(module)
    for name, child in module.named_children():
        setattr(module, name, standardise_convs(child))
    return module


def dp_compatible(module: nn.Module, **group_settings: int) -> nn.Module:
    """:func:`replace_batchnorm`, :func:`standardise_convs` and :func:`no_inplace`: a module
    that trains without batch statistics (see the module doc) and that Opacus' per-sample
    hooks accept (``ModuleValidator.validate(module, strict=True)`` passes for every
    backbone)."""
    return no_inplace(standardise_convs(replace_batchnorm(module, **group_settings)))


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
