"""Reference models as stage roles: which roles an audit adds, what each trains on, the plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightning_talos.config.load import compose
from lightning_talos.errors import UserError
from lightning_talos.orchestration.audit import graph
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.references import (
    PLAN_FILE,
    reference_roles,
    reference_splits,
    run_plan,
)
from lightning_talos.stages.registry import role_family
from lightning_talos.stages.training import role_splits
from tests.conftest import TINY_ARGS


def _cfg(tmp_path: Path, *extra: str):  # noqa: ANN202 (DictConfig)
    return compose([*TINY_ARGS, f"run.dir={tmp_path}", *extra])


def test_reference_roles_follow_the_requested_attacks(tmp_path: Path) -> None:
    assert reference_roles(_cfg(tmp_path)) == ()  # the paper's attacks need none
    assert reference_roles(
        _cfg(tmp_path, "attacks=[rmia]", "mia.references=1", "mia.rmia_a=0.3")
    ) == ("ref-0",)
    roles = reference_roles(_cfg(tmp_path, "attacks=[metric,lira]", "mia.references=3"))
    assert roles == ("ref-0", "ref-1", "ref-2")
    with pytest.raises(UserError, match="LiRA needs mia.references >= 3"):
        reference_roles(_cfg(tmp_path, "attacks=[lira]", "mia.references=2"))
    with pytest.raises(UserError, match=">= 1"):
        reference_roles(_cfg(tmp_path, "attacks=[rmia]", "mia.references=0", "mia.rmia_a=0.3"))


def test_role_family_names_only_reference_roles() -> None:
    assert role_family("ref-12") is not None
    assert role_family("target") is None and role_family("shadow") is None
    assert role_family("ref-x") is None and role_family("other-1") is None


def test_audit_graph_adds_the_reference_stages_of_every_method(tmp_path: Path) -> None:
    plain = {n.name for n in graph(_cfg(tmp_path), with_attribute=True)}
    assert not any("ref-" in n for n in plain)
    refs = ("attacks=[metric,lira]", "mia.references=3")
    cfg = _cfg(tmp_path, *refs, "talos.init_from_pretrain=true")
    nodes = graph(cfg, with_attribute=True)
    names = [n.name for n in nodes]
    added = {n for n in names if "-ref-" in n}
    stages = ("supervised", "pretrain", "linear", "talos", "talos_linear")
    assert added == {f"{s}-ref-{j}" for s in stages for j in range(3)}
    for node in nodes:  # dependency order: every node after what it reads
        assert all(names.index(d.name) < names.index(node.name) for d in node.deps)
    mia = next(n for n in nodes if n.name == "mia-contrastive")
    deps = {d.name for d in mia.deps}
    assert deps == {f"linear-{r}" for r in ("target", "shadow", "ref-0", "ref-1", "ref-2")}


def test_reference_data_is_the_plan_row_and_its_hash_survives_growth(tmp_path: Path) -> None:
    ctx = RunContext(_cfg(tmp_path, "attacks=[rmia]", "mia.references=2", "mia.rmia_a=0.3"))
    plan = run_plan(ctx)
    data = role_splits(ctx, "ref-1")
    assert np.array_equal(data.members("ref-1"), plan.members(1))
    # validation on the other half of the pool; target/shadow pass through
    pool = np.concatenate([ctx.splits.shadow_train, ctx.splits.shadow_test])
    halves = np.concatenate([data.members("ref-1"), data.nonmembers("ref-1")])
    assert np.array_equal(np.sort(halves), np.sort(pool))
    assert np.array_equal(data.members("target"), ctx.splits.members("target"))
    saved = json.loads((ctx.root / PLAN_FILE).read_text())
    assert len(saved["inclusion"]) == 2
    grown = RunContext(_cfg(tmp_path, "attacks=[rmia]", "mia.references=5"))
    assert reference_splits(grown, "ref-1").hash == data.hash  # trained references stay done
    again = json.loads((ctx.root / PLAN_FILE).read_text())
    assert len(again["inclusion"]) == 5 and again["inclusion"][:2] == saved["inclusion"]
    online = RunContext(_cfg(tmp_path, "attacks=[rmia]", "mia.reference_mode=online"))
    with pytest.raises(UserError, match="differs from the one the config now gives"):
        run_plan(online)  # never re-drawn under another mode in the same run


def test_online_plan_puts_each_target_candidate_in_half_the_references(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "attacks=[lira]", "mia.references=4", "mia.reference_mode=online")
    ctx = RunContext(cfg)
    plan = run_plan(ctx)
    for role in ("target", "shadow"):
        for indices in (ctx.splits.members(role), ctx.splits.nonmembers(role)):
            assert (plan.inclusion_of(indices).sum(axis=0) == 2).all()
    trained = np.concatenate([role_splits(ctx, f"ref-{j}").members(f"ref-{j}") for j in range(4)])
    assert np.isin(ctx.splits.members("target"), trained).all()
    offline = run_plan(RunContext(_cfg(tmp_path, "run.name=off", "attacks=[lira]")))
    assert not offline.inclusion_of(ctx.splits.members("target")).any()
