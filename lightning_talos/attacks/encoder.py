"""Membership inference on a contrastive encoder itself, without any classifier (EncoderMI).

A contrastive encoder is trained to embed augmented views of its training images close
together, so members' views agree more than non-members' (Liu et al., "EncoderMI", CCS 2021).
For each image, ``n_views`` augmentations (the training augmentation) are embedded and the
pairwise cosine similarities of the views give:

* the *similarity score*: their mean (EncoderMI's threshold attack);
* the *feature vector*: all ``n_views * (n_views - 1) / 2`` similarities sorted ascending
  (EncoderMI's vector-based attack), so the order of the views does not matter.

Both are calibrated on the shadow encoder (members = shadow-train, non-members = shadow-test)
and applied unchanged to the target encoder, as the posterior attacks are: a threshold on the
score (best balanced accuracy on the shadow) and a small MLP on the feature vector. With
reference encoders, :func:`encoder_lira_attack` runs LiRA on the similarity score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lightning_talos.attacks.lira import Signals, lira_attack
from lightning_talos.attacks.metrics import membership_metrics, threshold_metrics
from lightning_talos.attacks.small_mlp import Adam, SmallMLP, single_thread, train_epochs

Embed = Callable[[Tensor], Tensor]
Augment = Callable[[Tensor, torch.Generator], Tensor]

# Similarities are clipped this far inside (-1, 1) before atanh (identical views give 1).
_ATANH_EDGE = 1e-6


@torch.no_grad()
def view_similarities(
    embed: Embed,
    augment: Augment,
    images: Tensor,
    *,
    n_views: int = 10,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Sorted pairwise cosine similarities of each image's augmented views.

    Args:
        embed: Maps images ``[b, 3, H, W]`` to embeddings ``[b, d]`` (the encoder in eval
            mode; use the embedding that gets published, ``h``).
        augment: ``augment(images, generator)`` returns one random view per image,
            ``[b, 3, H', W']``, drawing from the given CPU generator (e.g.
            :class:`~lightning_talos.data.batched_aug.BatchedSimCLRAugment`).
        images: ``[N, 3, H, W]`` uint8 or float, as ``augment`` takes them.
        n_views: Views per image, at least 2.
        batch_size: Images per chunk (each chunk embeds ``n_views`` batches of this size).
        seed: Seed of the augmentation draws (one CPU generator for the whole call). The same
            seed, images and ``batch_size`` give the same views, so the target, shadow and
            reference encoders can be queried on identical views (pass the same seed).

    Returns:
        ``float64 [N, n_views * (n_views - 1) / 2]``, each row sorted ascending.

    Raises:
        ValueError: If ``n_views < 2``, ``batch_size < 1`` or ``images`` is not 4-D.
    """
    if n_views < 2 or batch_size < 1:
        raise ValueError(f"need n_views >= 2 and batch_size >= 1, got {n_views}, {batch_size}")
    if images.dim() != 4:
        raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(images.shape)}")
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.triu_indices(n_views, n_views, offset=1)
    parts = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        views = torch.stack(
            [F.normalize(embed(augment(chunk, gen)).float(), dim=1) for _ in range(n_views)], dim=1
        )
        gram = views @ views.transpose(1, 2)  # [b, V, V]
        parts.append(gram[:, rows, cols].double().cpu())
    if not parts:
        return np.zeros((0, len(rows)))
    return torch.sort(torch.cat(parts), dim=1).values.numpy()


def similarity_score(features: np.ndarray) -> np.ndarray:
    """EncoderMI's score: the mean pairwise similarity, ``[N, P] -> [N]`` (higher = member)."""
    return np.asarray(features, dtype=np.float64).mean(axis=1)


def similarity_statistic(score: np.ndarray) -> np.ndarray:
    """The similarity score on an unbounded scale for Gaussian fits: ``atanh`` (Fisher's z).

    Like LiRA's logit scaling of a confidence: a mean cosine piles up just below 1 for
    members; ``atanh`` (monotone, so per-example rankings are unchanged) spreads that end.

    Args:
        score: ``[...]`` mean similarities in ``[-1, 1]``.

    Returns:
        ``float64 [...]``, with the score clipped ``1e-6`` inside ``(-1, 1)`` first.
    """
    s = np.clip(np.asarray(score, dtype=np.float64), -1 + _ATANH_EDGE, 1 - _ATANH_EDGE)
    return np.arctanh(s)


def _member_prob(model: SmallMLP, x: np.ndarray) -> np.ndarray:
    """Softmax probability of the member class, ``[N]`` float64."""
    logits = model.logits(x).astype(np.float64)
    return np.exp(-np.logaddexp(0.0, logits[:, 0] - logits[:, 1]))


def _classifier_attack(
    shadow_x: np.ndarray,
    shadow_member: np.ndarray,
    target_x: np.ndarray,
    target_member: np.ndarray,
    *,
    hidden: Sequence[int],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    n_bootstrap: int,
) -> dict:
    """MLP on standardised sorted similarities (statistics of the shadow features)."""
    mean = shadow_x.mean(axis=0)
    std = np.maximum(shadow_x.std(axis=0), 1e-8)
    xs = ((shadow_x - mean) / std).astype(np.float32)
    xt = ((target_x - mean) / std).astype(np.float32)
    model = SmallMLP.seeded(xs.shape[1], hidden, 2, seed)
    generator = torch.Generator().manual_seed(seed)
    with single_thread():
        for _ in train_epochs(
            model,
            Adam(lr=lr),
            xs,
            shadow_member.astype(np.int64),
            epochs=epochs,
            batch_size=batch_size,
            generator=generator,
        ):
            pass
        prob = _member_prob(model, xt)
    out = membership_metrics(prob, target_member, prob >= 0.5, n_bootstrap=n_bootstrap, seed=seed)
    out["threshold"] = 0.5
    return out


def encoder_attack(
    shadow_features: np.ndarray,
    shadow_is_member: np.ndarray,
    target_features: np.ndarray,
    target_is_member: np.ndarray,
    *,
    hidden: Sequence[int] = (32, 32),
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    n_bootstrap: int = 1000,
) -> dict:
    """EncoderMI's threshold and vector attacks, calibrated on the shadow encoder.

    Args:
        shadow_features: ``[Ns, P]`` :func:`view_similarities` of the shadow encoder on its
            members and non-members.
        shadow_is_member: ``[Ns]`` 0/1.
        target_features: ``[Nt, P]`` the same for the target encoder (same ``n_views``).
        target_is_member: ``[Nt]`` 0/1.
        hidden: Hidden widths of the MLP on the sorted similarities.
        epochs: MLP training epochs (Adam, cross-entropy, on all shadow samples).
        lr: Adam learning rate.
        batch_size: MLP mini-batch size.
        seed: Seed of the MLP's initialisation and shuffling, and of the bootstrap.
        n_bootstrap: Bootstrap resamples for ``ci95``.

    Returns:
        ``{"similarity": ..., "classifier": ...}``, each a
        :func:`~lightning_talos.attacks.metrics.membership_metrics` dict with ``threshold``:
        ``similarity`` thresholds the mean similarity at the shadow's best balanced-accuracy
        threshold; ``classifier`` is the MLP's member probability with decision ``>= 0.5``.

    Raises:
        ValueError: If the feature widths differ, shapes disagree or a set lacks a class.
    """
    shadow_x = np.asarray(shadow_features, dtype=np.float64)
    target_x = np.asarray(target_features, dtype=np.float64)
    if shadow_x.ndim != 2 or target_x.ndim != 2 or shadow_x.shape[1] != target_x.shape[1]:
        raise ValueError(
            f"expected features [N, P] of equal width, got {shadow_x.shape} and {target_x.shape}"
        )
    shadow_member = np.asarray(shadow_is_member).astype(bool)
    target_member = np.asarray(target_is_member).astype(bool)
    similarity = threshold_metrics(
        similarity_score(target_x),
        target_member,
        default_threshold=0.0,
        shadow_scores=similarity_score(shadow_x),
        shadow_is_member=shadow_member,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    classifier = _classifier_attack(
        shadow_x,
        shadow_member,
        target_x,
        target_member,
        hidden=hidden,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        n_bootstrap=n_bootstrap,
    )
    return {"similarity": similarity, "classifier": classifier}


def encoder_lira_attack(
    target: Signals,
    *,
    shadow: Signals | None = None,
    online: bool = False,
    global_variance_below: int = 64,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """LiRA on the similarity score: reference encoders give its per-example distribution.

    Args:
        target: Mean similarities (:func:`similarity_score`) of the target encoder ``[N]`` and
            of the reference encoders ``[K, N]`` on the target's candidates, with the
            inclusion and ``is_member``; the scores are mapped by :func:`similarity_statistic`
            before the Gaussian fits.
        shadow: The same for the shadow encoder's candidates, to calibrate the threshold.
        online: See :func:`~lightning_talos.attacks.lira.lira_scores`.
        global_variance_below: See :func:`~lightning_talos.attacks.lira.lira_scores`.
        n_bootstrap: Bootstrap resamples for ``ci95``.
        seed: Bootstrap seed.

    Returns:
        The :func:`~lightning_talos.attacks.lira.lira_attack` dict.

    Raises:
        ValueError: As :func:`~lightning_talos.attacks.lira.lira_attack`.
    """

    def scaled(s: Signals | None) -> Signals | None:
        if s is None:
            return None
        return Signals(
            similarity_statistic(s.model),
            similarity_statistic(s.references),
            s.inclusion,
            s.is_member,
        )

    return lira_attack(
        scaled(target),
        shadow=scaled(shadow),
        online=online,
        global_variance_below=global_variance_below,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
