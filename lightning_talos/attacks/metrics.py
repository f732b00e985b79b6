"""Membership-inference metrics: threshold calibration, ROC summaries and bootstrap intervals.

Everything here is plain NumPy over 1-D arrays (the tests check it against scikit-learn, whose
input validation cost 0.1 s per call here, more than the metrics themselves). Scores follow one
convention: **higher = more likely a member**, and a hard decision is "member when
``score >= threshold``".
"""

from __future__ import annotations

import numpy as np

# Bound on the number of entries of one block of bootstrap resamples (rows x samples), so the
# vectorised bootstrap stays within a few hundred MB on large quarters.
_BOOTSTRAP_BLOCK = 4_000_000


def _as_binary(is_member: np.ndarray, n: int | None = None) -> np.ndarray:
    """Check a membership vector: 1-D, length ``n``, and both classes present.

    Raises:
        ValueError: If the shape is wrong or only one class is present.
    """
    is_member = np.asarray(is_member).astype(bool).ravel()
    if n is not None and len(is_member) != n:
        raise ValueError(f"is_member has {len(is_member)} entries, expected {n}")
    n_pos = int(is_member.sum())
    if n_pos == 0 or n_pos == len(is_member):
        raise ValueError(
            "membership metrics need both members and non-members, got "
            f"{n_pos} members and {len(is_member) - n_pos} non-members"
        )
    return is_member


def _as_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as a finite float64 vector.

    Raises:
        ValueError: If a score is NaN or infinite.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (got NaN or inf)")
    return scores


def best_threshold(
    scores: np.ndarray, is_member: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """Threshold maximising balanced accuracy of "member iff ``score >= threshold``".

    One sort (see :func:`_roc_runs`), so the search is O(n log n). Candidate thresholds lie
    strictly between consecutive distinct scores (their midpoint), so tied scores always receive
    the same decision and the threshold transfers sensibly to unseen data. The one exception is
    "everyone is a member", whose threshold is the smallest score. Among equally good thresholds
    the highest (most conservative) is returned.

    Args:
        scores: ``[N]`` continuous scores.
        is_member: ``[N]`` 0/1 or bool ground truth.
        sample_weight: Optional ``[N]`` non-negative weights.

    Returns:
        The threshold.

    Raises:
        ValueError: If only one class is present, shapes disagree or a score is not finite.
    """
    scores = _as_scores(scores)
    is_member = _as_binary(is_member, len(scores))
    sorted_scores, run_end, fpr, tpr = _roc_runs(scores, is_member, sample_weight)
    k = int(np.argmax(tpr + 1.0 - fpr))
    if k == len(run_end) - 1:
        return float(sorted_scores[-1])
    upper, lower = sorted_scores[run_end[k]], sorted_scores[run_end[k] + 1]
    return float(upper / 2.0 + lower / 2.0)


def _roc_runs(
    scores: np.ndarray, is_member: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FPR and TPR of "member iff score >= s" for every distinct score s, highest first.

    Sorts once and reads the cumulative (weighted) member and non-member counts at the last
    position of each run of equal scores: all of a tie is above the threshold or none of it.

    Returns:
        ``(sorted_scores, run_end, fpr, tpr)``: the scores in decreasing order, the index of the
        last element of each run in that order, and one FPR and TPR per run.
    """
    weight = np.ones(len(scores)) if sample_weight is None else np.asarray(sample_weight, float)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    pos = np.cumsum(np.where(is_member[order], weight[order], 0.0))
    neg = np.cumsum(np.where(is_member[order], 0.0, weight[order]))
    run_end = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    return sorted_scores, run_end, neg[run_end] / neg[-1], pos[run_end] / pos[-1]


def roc_points(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC curve (every distinct threshold kept), for plotting.

    Args:
        scores: ``[N]`` continuous scores.
        is_member: ``[N]`` 0/1 ground truth.

    Returns:
        ``(fpr, tpr)``, both ``[M]``, starting at ``(0, 0)`` and ending at ``(1, 1)``.

    Raises:
        ValueError: If only one class is present or a score is not finite.
    """
    scores = _as_scores(scores)
    is_member = _as_binary(is_member, len(scores))
    _, _, fpr, tpr = _roc_runs(scores, is_member)
    return np.r_[0.0, fpr], np.r_[0.0, tpr]


def _trapezoid_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC polyline (equals the rank AUC with ties counted 1/2)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The best TPR among the ROC points whose FPR is at most ``target``.

    No interpolation: only thresholds actually realised on the data count (a point between two
    ROC points is reachable only by randomising the decision, which the attacks do not do).

    Args:
        fpr: ``[M]`` false positive rates of the ROC points (e.g. from :func:`roc_points`),
            including ``(0, 0)``.
        tpr: ``[M]`` matching true positive rates.
        target: The largest FPR allowed, in ``[0, 1]``.

    Returns:
        ``max tpr[fpr <= target]`` (0.0 if no point qualifies).
    """
    allowed = np.asarray(fpr) <= target
    return float(np.max(np.asarray(tpr)[allowed])) if allowed.any() else 0.0


def _auc_from_groups(pos_groups: np.ndarray, neg_groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Rank-based (Mann-Whitney) AUC for each row of resampled group ids.

    ``pos_groups`` ``[B, P]`` and ``neg_groups`` ``[B, Q]`` hold the index of each resampled
    score among the sorted distinct scores. A member beats every non-member in a lower group and
    half-beats those in its own group (ties count 1/2, as in ``roc_auc_score``). Per row, the
    members and non-members are counted per group (one ``bincount`` each over all rows) and the
    wins are dot products of dense ``[B, G]`` count tables: no random gathers.

    Returns:
        ``[B]`` AUCs.
    """
    rows = pos_groups.shape[0]
    offset = (np.arange(rows) * n_groups)[:, None]

    def counts(groups: np.ndarray) -> np.ndarray:
        flat = (groups + offset).ravel()
        return np.bincount(flat, minlength=rows * n_groups).reshape(rows, n_groups)

    pos, neg = counts(pos_groups), counts(neg_groups)
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = np.einsum("bg,bg->b", pos, neg_below, dtype=np.float64)
    ties = np.einsum("bg,bg->b", pos, neg, dtype=np.float64)
    return (wins + 0.5 * ties) / (pos_groups.shape[1] * neg_groups.shape[1])


def rank_auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """ROC AUC by the rank formula used in the bootstrap (equals ``roc_auc_score``).

    Raises:
        ValueError: If only one class is present or a score is not finite.
    """
    scores = _as_scores(scores)
    is_member = _as_binary(is_member, len(scores))
    _, groups = np.unique(scores, return_inverse=True)
    groups = groups.ravel()
    return float(
        _auc_from_groups(groups[is_member][None], groups[~is_member][None], groups.max() + 1)[0]
    )


def _bootstrap(
    scores: np.ndarray, is_member: np.ndarray, correct: np.ndarray, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and AUC on stratified bootstrap resamples, vectorised by blocks of rows.

    Members and non-members are resampled separately (stratified), so every resample keeps the
    class sizes of the data and its AUC is always defined.

    Returns:
        ``(acc, auc)``, each ``[n_bootstrap]``.
    """
    _, groups = np.unique(scores, return_inverse=True)
    groups = groups.ravel()
    n_groups = int(groups.max()) + 1
    pos_g, neg_g = groups[is_member], groups[~is_member]
    pos_c, neg_c = correct[is_member], correct[~is_member]
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK // len(scores))
    accs, aucs = [], []
    for start in range(0, n_bootstrap, block):
        b = min(block, n_bootstrap - start)
        ip = rng.integers(0, len(pos_g), size=(b, len(pos_g)))
        ineg = rng.integers(0, len(neg_g), size=(b, len(neg_g)))
        accs.append((pos_c[ip].sum(1) + neg_c[ineg].sum(1)) / len(scores))
        aucs.append(_auc_from_groups(pos_g[ip], neg_g[ineg], n_groups))
    return np.concatenate(accs), np.concatenate(aucs)


def _interval(values: np.ndarray) -> list[float]:
    """Percentile 95% interval ``[2.5%, 97.5%]``."""
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def membership_metrics(
    scores: np.ndarray,
    is_member: np.ndarray,
    predictions: np.ndarray,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Summarise one membership attack on one evaluation set.

    Args:
        scores: ``[N]`` continuous attack scores, higher = more likely a member.
        is_member: ``[N]`` 0/1 ground truth.
        predictions: ``[N]`` the attack's hard 0/1 decisions (its calibrated threshold).
        n_bootstrap: Number of stratified bootstrap resamples for the intervals (0 disables
            them: the intervals are then the point estimates).
        seed: Seed of the bootstrap.

    Returns:
        ``acc``, ``balanced_acc``, ``precision``, ``recall`` (from ``predictions``); ``auc``
        (of ``scores``, ties counted 1/2, as scikit-learn's ``roc_auc_score``; 0.5 for constant
        scores); ``advantage`` (max TPR - FPR over the exact ROC); ``tpr_at_1pct_fpr`` and
        ``tpr_at_0p1pct_fpr`` (the best TPR among ROC points with FPR <= 1% and 0.1%, no
        interpolation: :func:`tpr_at_fpr`); ``ci95`` ``{"acc": [lo, hi], "auc": [lo, hi]}``
        (percentile bootstrap); ``n_members``, ``n_nonmembers``; ``roc`` (see
        :func:`roc_summary`).

    Raises:
        ValueError: If only one class is present, shapes disagree or a score is not finite.
    """
    scores = _as_scores(scores)
    is_member = _as_binary(is_member, len(scores))
    predictions = np.asarray(predictions).astype(bool).ravel()
    if len(predictions) != len(scores):
        raise ValueError(f"predictions has {len(predictions)} entries, expected {len(scores)}")
    fpr, tpr = roc_points(scores, is_member)
    true_pos = int(np.sum(predictions & is_member))
    recall = true_pos / int(is_member.sum())
    specificity = int(np.sum(~predictions & ~is_member)) / int((~is_member).sum())
    out = {
        "acc": float(np.mean(predictions == is_member)),
        "balanced_acc": (recall + specificity) / 2.0,
        "precision": true_pos / int(predictions.sum()) if predictions.any() else 0.0,
        "recall": recall,
        "auc": _trapezoid_auc(fpr, tpr),
        "advantage": float(np.max(tpr - fpr)),
        "tpr_at_1pct_fpr": tpr_at_fpr(fpr, tpr, 0.01),
        "tpr_at_0p1pct_fpr": tpr_at_fpr(fpr, tpr, 0.001),
    }
    if n_bootstrap > 0:
        acc, auc = _bootstrap(scores, is_member, predictions == is_member, n_bootstrap, seed)
        out["ci95"] = {"acc": _interval(acc), "auc": _interval(auc)}
    else:
        out["ci95"] = {"acc": [out["acc"]] * 2, "auc": [out["auc"]] * 2}
    out["n_members"] = int(is_member.sum())
    out["n_nonmembers"] = int((~is_member).sum())
    out["roc"] = roc_summary(fpr, tpr)
    return out


def roc_summary(fpr: np.ndarray, tpr: np.ndarray, points: int = 64) -> dict[str, list[float]]:
    """The ROC at log-spaced FPRs (plus its ends), small enough to keep in JSON for plots.

    TPR at each FPR is read with :func:`tpr_at_fpr` (a step function: the best realised
    operating point at or below that FPR), so the low-FPR region that matters for membership
    inference (Carlini et al. 2022) keeps its resolution.
    """
    grid = np.unique(np.concatenate([[0.0], np.logspace(-4, 0, points)]))
    return {
        "fpr": [round(float(f), 6) for f in grid],
        "tpr": [round(tpr_at_fpr(fpr, tpr, float(f)), 6) for f in grid],
    }


def threshold_metrics(
    target_scores: np.ndarray,
    target_is_member: np.ndarray,
    *,
    default_threshold: float | None = None,
    shadow_scores: np.ndarray | None = None,
    shadow_is_member: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """The usual result dict of a score attack, its hard decision "member iff score >= t".

    The threshold ``t`` only matters for ``acc``, ``balanced_acc``, ``precision``, ``recall``
    (AUC, advantage and TPR at low FPR are threshold-free). As for the other attacks it is
    calibrated on the shadow model: the best balanced-accuracy threshold of the same attack
    run against the shadow (:func:`~lightning_talos.attacks.metrics.best_threshold`); without
    shadow scores the attack's natural ``default_threshold`` is used.

    Args:
        target_scores: ``[N]`` scores on the target's candidates.
        target_is_member: ``[N]`` ground truth.
        default_threshold: Threshold used when no shadow scores are given.
        shadow_scores: ``[Ns]`` scores of the same attack against the shadow model, or ``None``.
        shadow_is_member: ``[Ns]`` the shadow's ground truth (required with ``shadow_scores``).
        n_bootstrap: Bootstrap resamples for ``ci95``.
        seed: Bootstrap seed.

    Returns:
        :func:`~lightning_talos.attacks.metrics.membership_metrics` plus ``threshold`` (float)
        and ``threshold_from`` (``"shadow"`` or ``"default"``).

    Raises:
        ValueError: If only one of the shadow arrays is given, or a set lacks a class.
    """
    if (shadow_scores is None) != (shadow_is_member is None):
        raise ValueError("give both shadow_scores and shadow_is_member, or neither")
    if shadow_scores is None:
        if default_threshold is None:
            raise ValueError("without shadow scores a default_threshold is needed")
        threshold, source = float(default_threshold), "default"
    else:
        threshold, source = best_threshold(shadow_scores, shadow_is_member), "shadow"
    target_scores = np.asarray(target_scores, dtype=np.float64)
    out = membership_metrics(
        target_scores,
        target_is_member,
        target_scores >= threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    out["threshold"] = threshold
    out["threshold_from"] = source
    return out
