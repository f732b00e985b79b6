"""LEACE concept erasure (Belrose et al., NeurIPS 2023) as a frozen affine layer.

LEACE finds the affine map ``x -> b + P (x - b)`` that changes the embedding least (in the
mean-squared, whitened sense) among all maps after which the class-conditional means of the
sensitive attribute coincide. Equal class means are exactly "linear guardedness": no *linear*
classifier does better than a constant on any convex loss. Non-linear probes (an MLP, kNN) may
still recover the attribute from the erased embedding; LEACE does not promise otherwise.

The projection is fitted by ``concept_erasure.LeaceFitter`` (package ``concept-erasure``) and
stored here as a dense ``[d, d]`` weight and a ``[d]`` bias, so the eraser is a plain
``nn.Module`` whose ``state_dict`` holds tensors only: it sits inside a LightningModule
checkpoint, or saves on its own with :meth:`ConceptEraser.save` and reloads with
``torch.load(weights_only=True)``.

The defender fits it on its own training quarter (it knows the attribute of its training data,
as Talos does): :func:`fit_for_role` reads ``<role>_train`` and nothing else.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from concept_erasure import LeaceFitter
from torch import Tensor, nn

from lightning_talos.attacks.outputs import SplitOutputs
from lightning_talos.errors import UserError

METHODS: tuple[str, ...] = ("leace", "orth")


class ConceptEraser(nn.Module):
    """A fitted eraser: ``erased = x @ weight.T + bias`` on embeddings ``[n, d]``.

    Build it with :meth:`fit` (or :meth:`from_state` / :meth:`load`); the constructor makes the
    identity map of dimension ``dim`` so that ``load_state_dict`` can fill it.

    Args:
        dim: Embedding dimension ``d``.

    Raises:
        ValueError: If ``dim < 1``.
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.register_buffer("weight", torch.eye(dim))
        self.register_buffer("bias", torch.zeros(dim))

    @property
    def dim(self) -> int:
        return int(self.bias.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        """Erase the attribute from embeddings ``[n, d]``; returns ``[n, d]`` in ``x``'s dtype."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings [n, {self.dim}], got {tuple(x.shape)}")
        # In fp32 even under autocast: a bf16 matmul keeps ~0.4% of the erased direction, which
        # a linear probe reads (measured: logistic 0.565 against the 0.509 baseline, vs 0.509).
        with torch.autocast(x.device.type, enabled=False):
            out = torch.addmm(self.bias, x.to(self.weight.dtype), self.weight.T)
        return out.to(x.dtype)

    @classmethod
    def fit(
        cls,
        embeddings: Tensor,
        attribute: Tensor,
        *,
        num_classes: int | None = None,
        method: str = "leace",
        shrinkage: bool = True,
        svd_tol: float = 1e-6,
        constrain_cov_trace: bool = False,
    ) -> ConceptEraser:
        """Fit an eraser on ``embeddings [n, d]`` and their attribute ``int [n]``.

        The attribute is one-hot encoded (``[n, num_classes]``) for the fitter; statistics are
        computed in float64 and the map stored in float32.

        Args:
            embeddings: ``float [n, d]`` the rows the eraser is fitted on (and only those).
            attribute: ``int [n]`` class of each row, in ``[0, num_classes)``.
            num_classes: Attribute classes (default ``attribute.max() + 1``).
            method: ``"leace"`` (least-squares optimal) or ``"orth"`` (orthogonal projection;
                also guards linearly, at a larger change to the embedding).
            shrinkage: Ledoit-Wolf-style shrinkage of the covariance estimate (the package's
                default), which keeps the whitening stable when ``n`` is not much larger than
                ``d``.
            svd_tol: Singular values of the whitened cross-covariance below this are kept (not
                erased). The package's default (0.01) leaves weak correlations in place; a
                small value erases them too, which is what the guarantee is about.
            constrain_cov_trace: Mix towards the orthogonal projection when LEACE would
                increase the trace of the covariance. Off by default: the mixture no longer
                equalises class means exactly, and a frozen layer has no use for it.

        Returns:
            The fitted eraser (on ``embeddings``' device).

        Raises:
            ValueError: For mismatched shapes, fewer than two rows, non-finite embeddings, an
                attribute outside ``[0, num_classes)`` or an unknown ``method``.
        """
        one_hot = _one_hot(embeddings, attribute, num_classes)
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        x = embeddings.detach().to(torch.float64)
        fitter = LeaceFitter(
            x.shape[1],
            one_hot.shape[1],
            method,  # type: ignore[arg-type]
            device=x.device,
            dtype=torch.float64,
            shrinkage=shrinkage,
            svd_tol=svd_tol,
            constrain_cov_trace=constrain_cov_trace,
        )
        fitter.update(x, one_hot.to(torch.float64))
        return cls.from_library(fitter.eraser)

    @classmethod
    def from_library(cls, eraser: object) -> ConceptEraser:
        """Dense copy of a ``concept_erasure.LeaceEraser`` (``x - (x - b) R^T L^T``).

        With ``P = I - L R``: ``erased = b + (x - b) P^T = x P^T + (I - P) b``.
        """
        left, right = eraser.proj_left, eraser.proj_right  # type: ignore[attr-defined]
        dim = left.shape[0]
        eye = torch.eye(dim, dtype=left.dtype, device=left.device)
        proj = eye - left @ right
        center = eraser.bias  # type: ignore[attr-defined]
        bias = torch.zeros(dim, dtype=left.dtype, device=left.device)
        if center is not None:
            bias = (eye - proj) @ center.to(left.dtype)
        return cls.from_state({"weight": proj, "bias": bias})

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor]) -> ConceptEraser:
        """An eraser from ``{"weight": [d, d], "bias": [d]}`` (a saved ``state_dict``).

        Raises:
            ValueError: If the tensors are missing or their shapes disagree.
        """
        if "weight" not in state or "bias" not in state:
            raise ValueError(f"an eraser state needs 'weight' and 'bias', got {sorted(state)}")
        weight, bias = state["weight"], state["bias"]
        dim = bias.shape[0] if bias.ndim == 1 else -1
        if weight.shape != (dim, dim):
            raise ValueError(f"weight {tuple(weight.shape)} and bias {tuple(bias.shape)} disagree")
        eraser = cls(dim).to(weight.device)
        eraser.weight.copy_(weight.to(torch.float32))
        eraser.bias.copy_(bias.to(torch.float32))
        return eraser

    def save(self, path: Path) -> Path:
        """Write the ``state_dict`` (two tensors) with ``torch.save``; returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ConceptEraser:
        """Read an eraser written by :meth:`save` (``weights_only=True``: tensors only).

        Raises:
            UserError: If the file is missing or is not an eraser.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return cls.from_state(state)
        except (OSError, RuntimeError, ValueError, TypeError, pickle.UnpicklingError) as err:
            raise UserError(f"cannot read the eraser {path}: {err}") from None


def _one_hot(embeddings: Tensor, attribute: Tensor, num_classes: int | None) -> Tensor:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [n, d], got {tuple(embeddings.shape)}")
    attribute = torch.as_tensor(attribute, device=embeddings.device)
    if attribute.shape != (embeddings.shape[0],):
        raise ValueError(f"attribute must be [{embeddings.shape[0]}], got {tuple(attribute.shape)}")
    if embeddings.shape[0] < 2:
        raise ValueError("fitting an eraser needs at least two rows")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    if attribute.dtype.is_floating_point or attribute.dtype == torch.bool:
        raise ValueError(f"attribute must hold integer classes, got {attribute.dtype}")
    classes = int(attribute.max()) + 1 if num_classes is None else num_classes
    if int(attribute.min()) < 0 or int(attribute.max()) >= classes:
        raise ValueError(f"attribute values must be in [0, {classes})")
    return nn.functional.one_hot(attribute.long(), classes)


def fit_for_role(
    quarters: Mapping[str, SplitOutputs], role: str, **settings: object
) -> ConceptEraser:
    """Fit the defender's eraser on ``<role>_train`` (its own training quarter) only.

    Args:
        quarters: A model's outputs per quarter (``target_train``, ``target_test``, ...).
        role: ``target`` or ``shadow``.
        **settings: Keyword settings of :meth:`ConceptEraser.fit` (``num_classes``,
            ``method``, ``shrinkage``, ``svd_tol``, ``constrain_cov_trace``).

    Raises:
        UserError: If the quarter is missing or carries no sensitive attribute.
    """
    name = f"{role}_train"
    if name not in quarters:
        raise UserError(f"LEACE needs the {name} quarter's embeddings")
    train = quarters[name]
    if train.attributes is None:
        raise UserError("LEACE needs a sensitive attribute; this dataset has none")
    return ConceptEraser.fit(train.embeddings, train.attributes, **settings)  # type: ignore[arg-type]
