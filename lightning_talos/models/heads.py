"""Heads on top of the embedding ``h``: projection, MLP, adversary."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """SimCLR projection head ``Linear(d, hidden) - ReLU - Linear(hidden, out_dim)``.

    Args:
        in_dim: Embedding size ``d``.
        hidden_dim: Hidden width; ``None`` means ``in_dim`` (the paper's ``Linear(d, d)``).
        out_dim: Projection size (256 in the paper).

    Raises:
        ValueError: If a size is not positive.
    """

    def __init__(self, in_dim: int, *, hidden_dim: int | None = None, out_dim: int = 256) -> None:
        super().__init__()
        hidden = in_dim if hidden_dim is None else hidden_dim
        if min(in_dim, hidden, out_dim) < 1:
            raise ValueError(
                f"sizes must be positive, got in_dim={in_dim}, hidden_dim={hidden}, "
                f"out_dim={out_dim}"
            )
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )

    def forward(self, h: Tensor) -> Tensor:
        """Project ``h`` ``[B, in_dim]`` to ``z`` ``[B, out_dim]``."""
        return self.net(h)


class MLP(nn.Module):
    """Multi-layer perceptron: ``Linear + ReLU`` per hidden layer, then a bare ``Linear``.

    There is deliberately **no activation after the last layer**: its outputs are logits for a
    cross-entropy loss. The released code of the paper put a ReLU on the output logits of every
    attack MLP and of the discriminator, which clips negative logits to zero; that defect is not
    reproduced.

    Args:
        in_dim: Input size.
        hidden: Hidden layer widths (may be empty: then a single linear layer).
        out_dim: Output size (number of classes).

    Raises:
        ValueError: If a size is not positive.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int) -> None:
        super().__init__()
        sizes = [in_dim, *hidden, out_dim]
        if min(sizes) < 1:
            raise ValueError(f"sizes must be positive, got {sizes}")
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, in_dim]`` to logits ``[B, out_dim]``."""
        return self.net(x)


class AdversaryHead(MLP):
    """Talos attribute discriminator ``d-64-64-K`` (without the gradient-reversal layer).

    Size ``in_dim`` from the tensor it actually reads (the embedding ``h`` or the projection
    ``z``): the released code sized the projection-location discriminator for the embedding.

    Args:
        in_dim: Size of the representation fed to the adversary.
        num_classes: Number of sensitive-attribute classes ``K``.
        hidden: Hidden widths.

    Raises:
        ValueError: If a size is not positive or ``num_classes < 2``.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: Sequence[int] = (64, 64)) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        super().__init__(in_dim, hidden, num_classes)
