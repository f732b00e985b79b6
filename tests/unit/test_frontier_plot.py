"""The privacy-utility frontier figure: points with intervals, missing values skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_talos.analysis.plots import frontier_points, plot_frontier

ROWS = [
    {
        "label": "supervised",
        "task_acc": 0.80,
        "task_ci": (0.78, 0.82),
        "aia_excess": 0.10,
        "aia_ci": (0.08, 0.12),
        "mia_adv": 0.30,
        "mia_ci": (0.25, 0.35),
    },
    {
        "label": "leace",
        "task_acc": 0.75,
        "task_ci": None,
        "aia_excess": 0.01,
        "aia_ci": (0.02, 0.03),
        "mia_adv": None,
        "mia_ci": None,
    },
    {
        "label": "dp_supervised_eps1",
        "task_acc": None,
        "task_ci": None,
        "aia_excess": 0.05,
        "aia_ci": None,
        "mia_adv": 0.02,
        "mia_ci": (0.0, 0.04),
    },
]


def test_points_skip_missing_values_and_turn_intervals_into_bars() -> None:
    aia = frontier_points(ROWS, "aia_excess", "aia_ci")
    assert [p["label"] for p in aia] == ["supervised", "leace"]  # no task accuracy: skipped
    assert aia[0]["xerr"] == pytest.approx((0.02, 0.02))
    assert aia[0]["yerr"] == pytest.approx((0.02, 0.02))
    assert aia[1]["xerr"] == (0.0, 0.0)  # no interval: no bar
    assert aia[1]["yerr"] == pytest.approx((0.0, 0.02))  # interval above the point: cut at it
    mia = frontier_points(ROWS, "mia_adv", "mia_ci")
    assert [p["label"] for p in mia] == ["supervised"]


def test_plot_frontier_writes_a_png(tmp_path: Path) -> None:
    path = plot_frontier(ROWS, tmp_path / "figs" / "frontier.png", title="synthetic")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    empty = plot_frontier([{"label": "x", "task_acc": None}], tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"
