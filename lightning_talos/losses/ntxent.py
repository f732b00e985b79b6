"""NT-Xent (normalised temperature-scaled cross entropy), the SimCLR loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_talos import distributed as dist_utils


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent loss in the cross-entropy formulation.

    For two views ``z0, z1`` of the same ``B`` images, every one of the ``2B`` local embeddings is
    an anchor; its positive is the other view of the same image and its negatives are the other
    ``2N - 2`` embeddings of the global batch (``N`` images over all ranks). With ``u`` the
    L2-normalised embeddings and ``T`` the temperature, anchor ``a`` with positive ``p`` has loss

        ``-log( exp(u_a . u_p / T) / sum_{k != a} exp(u_a . u_k / T) )``

    and the returned loss is the mean over this rank's ``2B`` anchors. Computed as a
    log-softmax/cross-entropy (never raw ``exp`` ratios), in float32 even under autocast (bf16
    logits at ``T = 0.05`` lose too much precision), with self-similarities masked by the most
    negative finite float rather than ``-inf``.

    With ``gather_distributed=True`` the negatives are gathered from all ranks with an
    autograd-aware gather; per-rank batch sizes may differ (no ``drop_last`` needed). Each rank
    returns the mean over its own anchors; with equal per-rank batches DDP's gradient averaging
    then gives exactly the gradient of the single-process loss on the global batch (see
    :mod:`lightning_talos.distributed`). With unequal batches DDP weighs ranks equally rather than
    samples, as it does for any loss.

    Args:
        temperature: Softmax temperature ``T`` (0.07 in the paper's released defaults).
        gather_distributed: Gather negatives from all processes when ``torch.distributed`` is
            initialised (a no-op otherwise).

    Raises:
        ValueError: If ``temperature <= 0``.
    """

    def __init__(self, temperature: float = 0.07, *, gather_distributed: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            z0: First view's projections ``[B, D]`` (need not be normalised), ``B >= 1``
                (``B = 0`` on a rank is allowed only with gathering: it contributes negatives
                elsewhere and returns a zero loss).
            z1: Second view's projections ``[B, D]``; row ``i`` is the same image as ``z0[i]``.

        Returns:
            Scalar float32 loss, mean over the ``2B`` local anchors.

        Raises:
            ValueError: If the inputs are not 2-D with equal shapes.
        """
        if z0.dim() != 2 or z0.shape != z1.shape:
            raise ValueError(
                f"z0 and z1 must be [B, D] with equal shapes, got {tuple(z0.shape)} and "
                f"{tuple(z1.shape)}"
            )
        n_local = z0.shape[0]
        # Autocast would run the matmul in bf16/fp16 even on float32 inputs; switch it off.
        with torch.autocast(device_type=z0.device.type, enabled=False):
            u0 = F.normalize(z0.float(), dim=1)
            u1 = F.normalize(z1.float(), dim=1)
            offset = 0
            if self.gather_distributed and dist_utils.world_size() > 1:
                sizes = dist_utils.gather_sizes(n_local, u0.device)
                offset = sum(sizes[: dist_utils.rank()])
                all0 = dist_utils.gather(u0, sizes)
                all1 = dist_utils.gather(u1, sizes)
            else:
                all0, all1 = u0, u1
            if n_local == 0:
                # Keep the graph connected so this rank's backward still joins the collectives.
                return (all0.sum() + all1.sum()) * 0.0
            n_global = all0.shape[0]
            candidates = torch.cat([all0, all1], dim=0)  # [2N, D]: view 0 block, view 1 block
            anchors = torch.cat([u0, u1], dim=0)  # [2B, D]
            logits = anchors @ candidates.T / self.temperature  # [2B, 2N]

            idx = torch.arange(n_local, device=z0.device) + offset  # global image index
            self_col = torch.cat([idx, idx + n_global])  # where each anchor meets itself
            pos_col = torch.cat([idx + n_global, idx])  # the other view of the same image
            rows = torch.arange(2 * n_local, device=z0.device)
            self_mask = torch.zeros_like(logits, dtype=torch.bool)
            self_mask[rows, self_col] = True
            logits = logits.masked_fill(self_mask, -torch.finfo(logits.dtype).max)
            return F.cross_entropy(logits, pos_col)
