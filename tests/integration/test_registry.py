"""A new attack stage is one function plus one registry entry: registered here, from the test
file alone, it runs through ``audit`` (graph, reuse, results.json) and gets a CLI command."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.features import ModelSource
from lightning_talos.stages.registry import (
    LEACE,
    REGISTRY,
    AttackStage,
    register_attack_stage,
    unregister,
)
from tests.conftest import TINY_ARGS


def confidence_gap(ctx: RunContext, source: ModelSource) -> dict[str, Any]:
    """Mean top softmax probability of the target's members minus its non-members."""
    out = source.outputs("target")

    def top(split: Any) -> float:
        return float(split.logits.softmax(1).max(1).values.mean())

    return {"method": source.method, "gap": top(out.members) - top(out.nonmembers),
            "n": len(out.members.labels)}  # fmt: skip


@pytest.fixture
def toy_stage() -> Iterator[AttackStage]:
    stage = register_attack_stage(
        AttackStage(
            name="toy",
            summary="mean confidence gap between members and non-members",
            sections=("mia",),
            compute=confidence_gap,
            summarize=lambda result: {"gap": result["gap"]},
            roles=("target",),
        )
    )
    yield stage
    unregister("toy")


def test_registered_attack_stage_runs_through_audit(
    toy_stage: AttackStage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY_ARGS, f"run.dir={tmp_path}", "methods=[supervised]", "attacks=[metric]"]
    assert main(["audit", *args]) == 0
    root = RunContext(compose(args)).root
    toy = json.loads((root / "toy-supervised" / "toy.json").read_text())
    results = json.loads((root / "results.json").read_text())
    assert results["supervised"]["toy"] == {"gap": toy["gap"]}
    assert results["contrastive"] is None  # not audited
    assert toy["n"] == results["meta"]["quarter_size"]
    assert np.isfinite(toy["gap"])
    capsys.readouterr()
    assert main(["audit", *args]) == 0  # a second audit reuses the toy stage
    assert "toy-supervised: done, skipped" in capsys.readouterr().out
    assert main(["toy", "--help"]) == 0
    assert "mean confidence gap" in capsys.readouterr().out


def _names() -> set[str]:
    return {*REGISTRY.train, *REGISTRY.attack, *REGISTRY.methods}


def test_no_stage_or_method_name_outside_the_registry() -> None:
    """Every string constant in the package that equals a stage or method name is in the
    registry module or in the results' names of the paper's models and attacks
    (``analysis/names.py``, which the registry registers them under); configs and tests may
    spell them, and so may the config schema's default ``method``."""
    package = Path(__file__).parents[2] / "lightning_talos"
    found: list[str] = []
    for path in package.rglob("*.py"):
        if path.relative_to(package).as_posix() in ("stages/registry.py", "analysis/names.py"):
            continue
        allowed = {"contrastive"} if path.name == "schema.py" else set()
        if path.name in ("schema.py", "leace.py"):
            allowed.add(LEACE)  # also the name of the eraser's fitting method (leace | orth)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in _names() - allowed:
                found.append(f"{path.relative_to(package)}:{node.lineno} {node.value!r}")
    assert found == []
