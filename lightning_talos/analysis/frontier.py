"""The privacy-utility frontier's points: one per model and defence setting of a results dict.

Each audited model (the paper's three, LEACE, each DP-SGD epsilon, ...) is one point: task
accuracy on x (the target's test quarter, 95% Wilson interval); on y, the strongest attribute
probe's accuracy minus the majority-class baseline, and the strongest membership attack's
advantage. Both y values are 0 for "no leak".

The membership advantage is ``2 x balanced accuracy - 1`` = TPR - FPR *at the attack's own
decision* (its threshold calibrated on the shadow model), with the interval of its accuracy
mapped the same way (members and non-members are equal in number, so accuracy and balanced
accuracy coincide). It is not ``advantage`` of ``results.json``, the best TPR - FPR over the
target's ROC, which picks its threshold on the target's labels and has no interval. "Strongest"
(attack, probe) is chosen on these target numbers: for display, as :func:`best_attack`; the
verdicts never rest on it.
"""

from __future__ import annotations

import math
from typing import Any

from lightning_talos.analysis.claims import decode_correct
from lightning_talos.analysis.names import PAPER_ATTACKS

MIA, AIA = PAPER_ATTACKS
#: Keys of a method entry that are not membership attack results.
_NOT_MEMBERSHIP = ("utility", AIA, "defence")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``successes / n``.

    Raises:
        ValueError: If ``n < 1`` or ``successes`` is outside ``[0, n]``.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}, {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _is_attack(value: Any) -> bool:
    ci = value.get("ci95") if isinstance(value, dict) else None
    return (
        isinstance(value.get("balanced_acc") if isinstance(value, dict) else None, int | float)
        and isinstance(ci, dict)
        and isinstance(ci.get("acc"), list)
    )


def membership_attacks(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every membership attack result of a method entry, by ``stage.attack`` (``mia.nn``,
    ``mia.metric_entropy``, ... and those of other attack stages, e.g. reference-model ones)."""
    found: dict[str, dict[str, Any]] = {}
    for stage, value in entry.items():
        if stage in _NOT_MEMBERSHIP or not isinstance(value, dict):
            continue
        if _is_attack(value):
            found[stage] = value
            continue
        found.update({f"{stage}.{k}": v for k, v in value.items() if _is_attack(v)})
    return found


def frontier_row(entry: dict[str, Any], label: str) -> dict[str, Any]:
    """One model's point (see the module docstring); a missing part is None."""
    utility = entry.get("utility") or {}
    row: dict[str, Any] = {"label": label, "task_acc": utility.get("test_acc"), "task_ci": None}
    correct = utility.get("test_correct")
    if isinstance(correct, str) and correct:
        bits = decode_correct(correct)
        row["task_ci"] = wilson(int(bits.sum()), len(bits))
    aia = entry.get(AIA) or {}
    probes = {k: v for k, v in aia.items() if isinstance(v, dict) and "acc" in v}
    row.update(aia_probe=None, aia_excess=None, aia_ci=None)
    if probes:
        name = max(probes, key=lambda k: probes[k]["acc"])
        base = float(aia["majority_baseline"])
        lo, hi = probes[name]["ci95"]["acc"]
        row.update(aia_probe=name, aia_excess=probes[name]["acc"] - base)
        row["aia_ci"] = (lo - base, hi - base)
    attacks = membership_attacks(entry)
    row.update(mia_attack=None, mia_adv=None, mia_ci=None)
    if attacks:
        name = max(attacks, key=lambda k: attacks[k]["balanced_acc"])
        lo, hi = attacks[name]["ci95"]["acc"]
        row.update(mia_attack=name, mia_adv=2 * attacks[name]["balanced_acc"] - 1)
        row["mia_ci"] = (2 * lo - 1, 2 * hi - 1)
    defence = entry.get("defence") or {}
    for key in ("epsilon", "delta", "max_grad_norm", "noise_multiplier"):
        row[key] = defence.get(key)
    return row


def frontier_rows(
    results: dict[str, Any], *, methods: list[str], labels: dict[str, str], run: str = ""
) -> list[dict[str, Any]]:
    """A point per method entry of one results dict (labels prefixed by ``run`` if given).

    Args:
        results: a ``results.json`` dict.
        methods: the method entries to read, in order (the registry's ``entry_methods``).
        labels: method name -> label (the registry's ``method_labels``).
        run: a prefix for the labels (several runs on one frontier).
    """
    rows = []
    for name in methods:
        entry = results.get(name)
        if isinstance(entry, dict) and entry.get("utility"):
            label = labels.get(name) or _variant_label(name, entry, labels)
            rows.append(frontier_row(entry, f"{run}: {label}" if run else label))
    return rows


def _variant_label(name: str, entry: dict[str, Any], labels: dict[str, str]) -> str:
    """A DP variant nobody registered in this process (``compare`` reads no config): its base
    method's label and target epsilon, else its key."""
    defence = entry.get("defence") or {}
    epsilon = defence.get("target_epsilon")
    if epsilon is None and defence.get("noise_multiplier") == 0:
        epsilon = math.inf  # clipping only
    base = next((b for b in labels if name.startswith(f"{b}_")), None)
    return f"{labels[base]} eps={epsilon:g}" if base and epsilon is not None else name
