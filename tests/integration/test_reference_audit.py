"""A tiny audit with LiRA, RMIA and the encoder attacks; raising K trains only new references."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.orchestration.audit import graph, plan
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.references import ENCODER_ENTRIES, PLAN_FILE
from lightning_talos.stages.results import validate_results
from tests.conftest import TINY_ARGS
from tests.fixtures.audits import completion_ids, finished_audit, run_root

TINY = [
    *TINY_ARGS,
    "attacks=[metric,lira,rmia,encoder]",
    "mia.references=3",  # the fewest LiRA fits a variance with
    "mia.encoder_views=3",
    "mia.encoder_epochs=2",
    "mia.rmia_population=16",
    "run.name=refs",
]
STRONG = ("lira", "rmia")


@pytest.fixture(scope="module")
def audit_args(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One finished tiny audit with three references per method."""
    yield from finished_audit(tmp_path_factory, "refs", TINY)


def test_audit_writes_every_stronger_attack_and_the_report_section(
    audit_args: list[str],
) -> None:
    root = run_root(audit_args)
    results = json.loads((root / "results.json").read_text())
    assert validate_results(results) == []
    for method in ("supervised", "contrastive", "talos"):
        mia = results[method]["mia"]
        assert set(STRONG) <= set(mia)
        assert (set(ENCODER_ENTRIES) <= set(mia)) == (method != "supervised")
        for name in (*STRONG, *ENCODER_ENTRIES):
            if name in mia:  # scored on both target quarters, with a ROC
                assert mia[name]["n_members"] == mia[name]["n_nonmembers"] == 64
                assert len(mia[name]["roc"]["fpr"]) == len(mia[name]["roc"]["tpr"]) >= 2
    raw = json.loads((root / "mia-contrastive" / "mia.json").read_text())["attacks"]
    assert raw["lira"]["references"] == 3 and raw["lira"]["threshold_from"] == "shadow"
    assert raw["rmia"]["population"] == 16
    # gamma and a as the authors run them: a tuned on the references, the value used recorded
    tuning = raw["rmia"]["a_tuning"]
    assert raw["rmia"]["gamma"] == 1.0 and raw["rmia"]["a"] == tuning["a"]
    assert tuning["grid"][tuning["auc"].index(max(tuning["auc"]))] == tuning["a"]
    nodes = {n.name for n in graph(compose(audit_args), with_attribute=True)}
    assert set(completion_ids(root)) == nodes  # every reference stage ran as a stage of the audit
    report = (root / "report.md").read_text()
    section = report.split("## Claim 1 under stronger attacks")[1]
    assert "| LiRA | lira |" in section and "| Encoder-level | encoder_lira |" in section
    assert "- **claim 1 under RMIA**: " in section and "- **claim 3 under LiRA**: " in section
    assert (root / "roc_stronger.png").is_file()
    assert results["claims"]["1"]["families"]["rmia"]["label"] == "RMIA"


def test_raising_k_trains_only_the_new_references(audit_args: list[str]) -> None:
    root = run_root(audit_args)
    before = completion_ids(root)
    rows = json.loads((root / PLAN_FILE).read_text())["inclusion"]
    more = [*audit_args, "mia.references=4"]
    assert main(["references", "method=supervised", *more]) == 0
    after = completion_ids(root)
    assert set(after) - set(before) == {"supervised-ref-3"}
    assert all(after[name] == before[name] for name in before)  # nothing re-trained
    grown = json.loads((root / PLAN_FILE).read_text())["inclusion"]
    assert grown[:3] == rows and len(grown) == 4  # the plan was extended, never re-drawn
    cfg = compose(more)
    actions = {n.name: a for n, a in plan(RunContext(cfg), graph(cfg, with_attribute=True)).items()}
    assert actions["supervised-ref-3"] == "done" and actions["linear-ref-3"] == "fresh"
    assert actions["mia-supervised"] == "fresh"  # a new reference is a new input of the attack
    assert actions["linear-ref-0"] == actions["supervised-ref-2"] == "done"
