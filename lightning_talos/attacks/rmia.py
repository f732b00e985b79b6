"""RMIA, the relative membership inference attack (Zarifzadeh et al., ICML 2024).

For an example ``x`` and the attacked model ``theta``, ``Pr(x | theta)`` is the model's
probability of the true label. Reference models give its marginal ``Pr(x)``, the average over
models that did and did not train on ``x``:

* online: the mean of ``Pr(x | theta_k)`` over all references (about half of them IN);
* offline (only OUT references): ``Pr(x) = ((1 + a) * mean_OUT + (1 - a)) / 2``, the paper's
  linear approximation of the missing IN half, ``Pr(x)_IN ~ a * Pr(x)_OUT + (1 - a)``
  (``a = 1``: no correction; smaller ``a``: IN models assumed more confident).

The ratio ``r(x) = Pr(x | theta) / Pr(x)`` is compared pairwise with population points ``z``
from the attacker's data (non-members of the attacked model): ``LR(x, z) = r(x) / r(z)`` and

    ``score(x) = fraction of z with LR(x, z) > gamma``.

Settings as the authors run them (ML Privacy Meter, ``modules/mia/attacks/rmia.py``):
``run_rmia`` counts the population points with ``ratios > 1.0``, so :data:`DEFAULT_GAMMA` is 1
with a strict inequality; ``tune_offline_a`` picks ``a`` from ``0, 0.1, ..., 1`` by the AUC of
RMIA against a reference model whose membership the attacker knows, never the target:
:func:`tune_offline_a` does the same, averaged over every reference as the pseudo-target.

``Pr(z)`` is computed by the same rule as ``Pr(x)`` (in offline mode from the references that
did not train on ``z``). With augmented queries (:func:`~lightning_talos.attacks.lira.query_logits`)
the score is computed per query and averaged. Works from ``K = 1`` reference (offline: the
population then has to come from the half of the attacker's data that reference did not see).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_talos.attacks.lira import Signals, broadcast_labels
from lightning_talos.attacks.metrics import rank_auc, threshold_metrics

# Floor on a marginal Pr(x) before dividing by it (an example every reference gets wrong).
_TINY = 1e-300
#: The likelihood-ratio threshold of the authors' code (``ratios > 1.0``).
DEFAULT_GAMMA = 1.0
#: The offline ``a`` values ``tune_offline_a`` tries (the authors' ``np.arange(0, 1.1, 0.1)``).
A_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def true_class_probability(
    logits: Tensor | np.ndarray, labels: Tensor | np.ndarray, *, temperature: float = 1.0
) -> np.ndarray:
    """``Pr(x | theta)``: the softmax probability of the true label, in float64.

    Args:
        logits: ``[..., C]``, e.g. ``[N, Q, C]`` from
            :func:`~lightning_talos.attacks.lira.query_logits`.
        labels: True labels, broadcastable to ``logits.shape[:-1]`` (a 1-D ``[N]`` indexes the
            first axis).
        temperature: Softmax temperature (logits are divided by it).

    Returns:
        ``float64 [...]``, ``logits.shape[:-1]``, in ``[0, 1]``.

    Raises:
        ValueError: If ``temperature <= 0``, ``C < 2`` or a label is out of range.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = torch.as_tensor(logits).detach().cpu().double() / temperature
    y = broadcast_labels(labels, z)
    log_p = torch.log_softmax(z, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return log_p.exp().numpy()


def marginal_probability(
    references: np.ndarray, inclusion: np.ndarray, *, online: bool, a: float
) -> np.ndarray:
    """``Pr(x)`` from the references (see the module docstring).

    Args:
        references: ``[K, N, Q]`` ``Pr(x | theta_k)``.
        inclusion: ``bool [K, N]``; offline uses the references with ``False`` only.
        online: Average all references (IN and OUT) instead of correcting the OUT mean.
        a: Offline interpolation parameter in ``[0, 1]``.

    Returns:
        ``float64 [N, Q]``.

    Raises:
        ValueError: Offline, if an example has no OUT reference.
    """
    if online:
        return references.mean(axis=0)
    out = ~inclusion
    counts = out.sum(axis=0)
    if np.any(counts == 0):
        raise ValueError(
            f"{int(np.sum(counts == 0))} points have no OUT reference; offline RMIA needs one "
            "(draw the population from data some reference did not train on)"
        )
    mean_out = (references * out[:, :, None]).sum(axis=0) / counts[:, None]
    return ((1.0 + a) * mean_out + (1.0 - a)) / 2.0


def _check_probabilities(*arrays: np.ndarray) -> None:
    for arr in arrays:
        if np.any(arr < 0) or np.any(arr > 1):
            raise ValueError("RMIA signals must be probabilities in [0, 1]")


def rmia_scores(
    x: Signals,
    z: Signals,
    *,
    online: bool = False,
    a: float = 0.3,
    gamma: float = DEFAULT_GAMMA,
) -> np.ndarray:
    """RMIA scores (higher = member) of the attacked model's examples ``x``.

    Args:
        x: ``Pr(x | theta)`` ``[N, Q]`` under the attacked model, ``[K, N, Q]`` under the
            references, and the inclusion ``[K, N]`` of ``x`` in the references.
        z: The same for the population points ``[M, Q]`` / ``[K, M, Q]`` / ``[K, M]``.
        online: See :func:`marginal_probability`.
        a: Offline interpolation parameter, in ``[0, 1]`` (ignored online).
        gamma: Likelihood-ratio threshold, ``> 0``: ``z`` counts when ``r(x) > gamma * r(z)``
            (the same as ``LR(x, z) > gamma``, without dividing by a zero ``r(z)``; exact ties
            at ``gamma`` may resolve either way under float rounding).

    Returns:
        ``float64 [N]`` in ``[0, 1]``: the fraction of ``z`` dominated by a factor ``gamma``,
        averaged over queries.

    Raises:
        ValueError: If shapes disagree (also ``Q`` or ``K`` between ``x`` and ``z``), a value is
            not a probability, ``a`` is outside ``[0, 1]``, ``gamma <= 0``, or an offline point
            has no OUT reference.
    """
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a must be in [0, 1], got {a}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    px, refs_x, incl_x = x.arrays()
    pz, refs_z, incl_z = z.arrays()
    if refs_x.shape[0] != refs_z.shape[0] or px.shape[1] != pz.shape[1]:
        raise ValueError(
            f"x and z need the same references and queries, got K={refs_x.shape[0]}, "
            f"Q={px.shape[1]} and K={refs_z.shape[0]}, Q={pz.shape[1]}"
        )
    _check_probabilities(px, refs_x, pz, refs_z)
    ratio_x = px / np.maximum(marginal_probability(refs_x, incl_x, online=online, a=a), _TINY)
    ratio_z = pz / np.maximum(marginal_probability(refs_z, incl_z, online=online, a=a), _TINY)
    scores = np.zeros(len(px))
    for q in range(px.shape[1]):
        # count of z with gamma * r(z) < r(x): one sort and a binary search per x
        bar = np.sort(gamma * ratio_z[:, q])
        scores += np.searchsorted(bar, ratio_x[:, q], side="left") / len(bar)
    return scores / px.shape[1]


def rmia_attack(
    target: Signals,
    target_population: Signals,
    *,
    shadow: Signals | None = None,
    shadow_population: Signals | None = None,
    online: bool = False,
    a: float = 0.3,
    gamma: float = DEFAULT_GAMMA,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """RMIA against the target, with the result keys of the other attacks.

    Args:
        target: ``Pr(x | .)`` signals of the target's candidates (``is_member`` required).
        target_population: Signals of the population points ``z`` under the target and the
            references.
        shadow: Optional signals of the shadow model's candidates (``is_member`` required), to
            calibrate the threshold of the hard decisions as the other attacks do (see
            :func:`~lightning_talos.attacks.metrics.threshold_metrics`); without it the threshold
            is 0.5 (``x`` beats half of the population by a factor ``gamma``).
        shadow_population: Population signals under the shadow (required with ``shadow``).
        online: See :func:`rmia_scores`.
        a: See :func:`rmia_scores`.
        gamma: See :func:`rmia_scores`.
        n_bootstrap: Bootstrap resamples for ``ci95``.
        seed: Bootstrap seed.

    Returns:
        The :func:`~lightning_talos.attacks.metrics.threshold_metrics` dict plus ``online``,
        ``a``, ``gamma``, ``references`` (K), ``population`` (M) and ``queries`` (Q).

    Raises:
        ValueError: As :func:`rmia_scores`; or if ground truth is missing or only one of
            ``shadow`` / ``shadow_population`` is given.
    """
    if (shadow is None) != (shadow_population is None):
        raise ValueError("give both shadow and shadow_population, or neither")
    settings = {"online": online, "a": a, "gamma": gamma}
    shadow_scores = shadow_member = None
    if shadow is not None:
        shadow_scores = rmia_scores(shadow, shadow_population, **settings)
        shadow_member = shadow.ground_truth("shadow")
    _, refs, _ = target.arrays()
    pz, _, _ = target_population.arrays()
    out = threshold_metrics(
        rmia_scores(target, target_population, **settings),
        target.ground_truth("target"),
        default_threshold=0.5,
        shadow_scores=shadow_scores,
        shadow_is_member=shadow_member,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    out.update(
        online=online,
        a=a,
        gamma=gamma,
        references=int(refs.shape[0]),
        population=int(pz.shape[0]),
        queries=int(refs.shape[2]),
    )
    return out


def tune_offline_a(
    references: Signals, population: Signals, *, gamma: float = DEFAULT_GAMMA
) -> dict[str, Any]:
    """Offline ``a`` chosen on the reference models alone (the target is never used).

    Each reference ``j`` in turn is the attacked model: RMIA scores its own candidates with the
    other references, and the AUC against ``j``'s known inclusion is recorded for every ``a``
    of :data:`A_GRID`. The ``a`` with the highest mean AUC over the pseudo-targets wins (ties:
    the smallest, as the authors' loop keeps the first maximum). A candidate enters ``j``'s
    attack only when some other reference did not train on it; a population point only when
    ``j`` and some other reference did not.

    Args:
        references: ``model`` unused; ``references`` ``[K, N, Q]`` ``Pr(x | theta_k)`` on the
            references' candidates, ``inclusion`` ``bool [K, N]``.
        population: The same for the population points ``[K, M, Q]`` / ``[K, M]``.
        gamma: Likelihood-ratio threshold of the scores.

    Returns:
        ``{"a": best, "grid": [...], "auc": [mean AUC per grid value], "pseudo_targets": n}``.

    Raises:
        ValueError: If fewer than three references are given, or no reference can be attacked
            (no candidates of both kinds with an OUT reference among the others).
    """
    _, refs, incl = references.arrays()
    _, refs_z, incl_z = population.arrays()
    k = refs.shape[0]
    if k < 3:
        raise ValueError(f"tuning a needs 3 references (one attacked, two for it), got {k}")
    totals, used = np.zeros(len(A_GRID)), 0
    for j in range(k):
        others = np.arange(k) != j
        keep_x = (~incl[others]).any(axis=0)
        keep_z = ~incl_z[j] & (~incl_z[others]).any(axis=0)
        truth = incl[j, keep_x]
        if truth.all() or not truth.any() or not keep_z.any():
            continue
        x = Signals(refs[j][keep_x], refs[others][:, keep_x], incl[others][:, keep_x])
        z = Signals(refs_z[j][keep_z], refs_z[others][:, keep_z], incl_z[others][:, keep_z])
        for i, a in enumerate(A_GRID):
            totals[i] += rank_auc(rmia_scores(x, z, a=a, gamma=gamma), truth)
        used += 1
    if used == 0:
        raise ValueError("no reference has candidates of both kinds to tune a on")
    mean = totals / used
    return {
        "a": float(A_GRID[int(np.argmax(mean))]),
        "grid": list(A_GRID),
        "auc": [float(v) for v in mean],
        "pseudo_targets": used,
    }
