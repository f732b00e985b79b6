"""Presets composed through ``defaults: {experiment: BASE}`` stay what they were when they were
copies: every preset's composed config is pinned in ``tests/fixtures/presets.json``.

A deliberate change to a preset or a default updates the fixture in the same commit (regenerate
it with ``python -m tests.unit.test_presets``), so the diff shows every value that moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lightning_talos.config.load import available, compose, to_dict
from lightning_talos.errors import UserError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "presets.json"


def composed() -> dict[str, Any]:
    out = {name: to_dict(compose([f"experiment={name}"])) for name in available("experiment")}
    out["_default"] = to_dict(compose([]))
    return out


def test_every_preset_composes_to_its_pinned_config() -> None:
    pinned = json.loads(FIXTURE.read_text())
    assert composed() == pinned


def test_dataset_presets_extend_the_paper_preset() -> None:
    paper = to_dict(compose(["experiment=paper"]))
    for name in ("cifar10", "cifar100", "stl10", "utkface", "celeba"):
        cfg = to_dict(compose([f"experiment={name}"]))
        differing = {k for k in cfg if cfg[k] != paper[k]}
        assert differing == {"data"}, name
        assert cfg["data"]["name"] == name
        assert cfg["data"]["image_size"] == paper["data"]["image_size"] == 96


def test_demo_extends_synthetic_cpu() -> None:
    assert to_dict(compose(["experiment=demo"])) == to_dict(compose(["experiment=synthetic_cpu"]))


def test_preset_cycle_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "a.yaml").write_text("defaults: {experiment: b}\n")
    (tmp_path / "experiment" / "b.yaml").write_text("defaults: {experiment: a}\n")
    monkeypatch.setenv("LIGHTNING_TALOS_CONFIGS", str(tmp_path))
    with pytest.raises(UserError, match="cycle"):
        compose(["experiment=a"])


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(composed(), indent=1, sort_keys=True) + "\n")
