"""The audit's stage graph, results.json and the report, on one tiny synthetic audit."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightning_talos.analysis.claims import judge_claims
from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.orchestration.audit import graph, plan
from lightning_talos.report.report import claims, write_report
from lightning_talos.runs import folder as folder_module
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.results import SCHEMA_VERSION, validate_results
from tests.conftest import TINY_ARGS
from tests.fixtures.audits import completion_ids, finished_audit, run_root

TINY = [
    *TINY_ARGS,
    "talos.init_from_pretrain=true",  # the graph then has talos depend on pretrain
    "mia.label_only_samples=4",
    "mia.hsj_iterations=1",
    "mia.hsj_grad_samples=4",
    "mia.aug_n=2",
    "run.name=tiny",
]


@pytest.fixture(scope="module")
def audit_args(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One finished tiny audit shared by the tests of this module (they run in order)."""
    yield from finished_audit(tmp_path_factory, "audit", TINY)


def test_audit_writes_valid_results_and_report(audit_args: list[str]) -> None:
    root = run_root(audit_args)
    results = json.loads((root / "results.json").read_text())
    assert validate_results(results) == []
    for method in ("supervised", "contrastive", "talos"):
        assert results[method]["mia"] and results[method]["aia"]
        correct = results[method]["utility"]["test_correct"]  # per-sample, for claim 3
        assert len(correct) == results["meta"]["quarter_size"]
        assert correct.count("1") / len(correct) == results[method]["utility"]["test_acc"]
    assert results["claims"] == judge_claims(results)
    nodes = graph(compose(audit_args), with_attribute=True)
    assert set(completion_ids(root)) == {n.name for n in nodes}
    report = (root / "report.md").read_text()
    assert "| Supervised |" in report and "| Talos |" in report
    assert (root / "roc.png").is_file() and (root / "aia.png").is_file()
    # every stage's profile; a trained stage's steps and fit inside its wall time
    profiles = results["meta"]["profile"]
    assert set(profiles) == {n.name for n in nodes}
    for name, profile in profiles.items():
        assert profile["wall_s"] > 0 and profile["cpu_s"] >= 0 and profile["threads"] >= 1
        if (root / name / "metrics.json").is_file():
            assert profile["steps"] > 0 and 0 < profile["fit_s"] <= profile["wall_s"], name
    pretrain = json.loads((root / "pretrain-target" / "metrics.json").read_text())
    assert profiles["pretrain-target"]["steps"] == pretrain["global_step"]
    assert "## Where the time went" in report


def test_second_audit_trains_nothing_and_reads_each_manifest_once(
    audit_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = folder_module._read_manifest
    monkeypatch.setattr(folder_module, "_read_manifest", lambda p: reads.append(p) or real(p))
    before = completion_ids(run_root(audit_args))
    assert main(["audit", *audit_args]) == 0
    assert completion_ids(run_root(audit_args)) == before
    out = capsys.readouterr().out
    assert out.count("done, skipped") == len(before)
    stage_reads = sorted(p.name for p in reads if p.name in before)
    assert stage_reads == sorted(before), stage_reads  # each stage's manifest, once


def test_deleted_stage_reruns_with_its_dependants_only(audit_args: list[str]) -> None:
    root = run_root(audit_args)
    before = completion_ids(root)
    shutil.rmtree(root / "linear-target")
    assert main(["audit", *audit_args]) == 0
    after = completion_ids(root)
    rerun = {name for name in before if after[name] != before[name]}
    assert rerun == {"linear-target", "mia-contrastive", "aia-contrastive"}


def test_changed_setting_stops_before_anything_runs(
    audit_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = completion_ids(run_root(audit_args))
    assert main(["audit", *audit_args, "simclr.temperature=0.3", "mia.nn_epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "simclr.temperature" in err
    assert completion_ids(run_root(audit_args)) == before


def test_dry_run_and_interrupted_stage_plan(
    audit_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = run_root(audit_args)
    manifest_path = root / "supervised-shadow" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["status"] = "running"  # as a kill mid-training leaves it
    manifest_path.write_text(json.dumps(manifest))
    ctx = RunContext(compose(audit_args))
    actions = {n.name: a for n, a in plan(ctx, graph(ctx.cfg, with_attribute=True)).items()}
    assert actions["supervised-shadow"] == "resume"
    assert actions["mia-supervised"] == "stale"
    assert actions["pretrain-target"] == "done"
    assert main(["audit", "--dry-run", *audit_args]) == 0
    assert "supervised-shadow" in capsys.readouterr().out


def test_report_renders_from_fixture_results(tmp_path: Path) -> None:
    def attack(acc: float) -> dict:
        return {"acc": acc, "balanced_acc": acc, "auc": acc + 0.02, "advantage": 0.1,
                "tpr_at_1pct_fpr": 0.02, "tpr_at_0p1pct_fpr": 0.0,
                "ci95": {"acc": [acc - 0.01, acc + 0.01], "auc": [acc, acc + 0.04]}}  # fmt: skip

    def probes(acc: float) -> dict:
        probe = {"acc": acc, "balanced_acc": acc, "macro_f1": acc,
                 "ci95": {"acc": [acc - 0.01, acc + 0.01]}}  # fmt: skip
        return {"mlp": probe, "majority_baseline": 0.5, "strongest": "mlp"}

    def model(mia: float, aia: float, test_acc: float) -> dict:
        utility = {"train_acc": 0.9, "test_acc": test_acc, "gap": 0.9 - test_acc}
        return {"utility": utility, "mia": {"nn": attack(mia)}, "aia": probes(aia)}

    results = {
        "schema": SCHEMA_VERSION,
        "supervised": model(0.70, 0.60, 0.70),
        "contrastive": model(0.55, 0.90, 0.75),
        "talos": model(0.54, 0.62, 0.74),
        "meta": {"dataset": "synthetic", "backbone": "small_cnn", "seeds": [0],
                 "split_hash": "x", "git_commit": None, "versions": {}, "wall_time_s": {},
                 "quarter_size": 4000,
                 "claims_basis": {"membership_attacks": ["nn"], "attribute_probes": ["mlp"]}},
    }  # fmt: skip
    results["claims"] = judge_claims(results)
    assert validate_results(results) == []
    (tmp_path / "results.json").write_text(json.dumps(results))
    text = write_report(tmp_path).read_text()
    assert text.count(": holds** (single-seed verdict") == 3
    results["talos"] = model(0.54, 0.91, 0.60)
    results["claims"] = judge_claims(results)
    assert "does not hold" in claims(results)[2]
    assert (tmp_path / "aia.png").is_file()


def test_seed_aggregate_and_lambda_sweep_compare(tmp_path: Path) -> None:
    from lightning_talos.report.report import compare
    from lightning_talos.stages.results import aggregate

    def run(seed: int, acc: float, lam: float) -> dict:
        probe = {"acc": acc, "balanced_acc": acc, "macro_f1": acc, "ci95": {"acc": [acc, acc]}}
        talos = {"utility": {"train_acc": 0.8, "test_acc": acc, "gap": 0.8 - acc}, "mia": None,
                 "aia": {"mlp": probe, "majority_baseline": 0.5, "strongest": "mlp"}}  # fmt: skip
        meta = {"dataset": "synthetic", "backbone": "small_cnn", "seeds": [seed],
                "split_hash": str(seed), "talos_lambda": lam}  # fmt: skip
        meta.update(git_commit=None, versions={}, wall_time_s={})
        out = {"schema": SCHEMA_VERSION, "supervised": None, "contrastive": None, "talos": talos,
               "meta": meta}  # fmt: skip
        return {**out, "claims": judge_claims(out)}

    merged = aggregate([run(0, 0.6, 1.0), run(1, 0.8, 1.0)])
    assert abs(merged["talos"]["utility"]["test_acc"] - 0.7) < 1e-9
    assert abs(merged["spread"]["talos"]["utility"]["test_acc"] - 0.1414213) < 1e-6
    assert merged["meta"]["seeds"] == [0, 1]
    assert merged["claims"]["3"]["verdict"] == "not evaluated"  # no MIA, no contrastive model
    roots = []
    for lam, acc in ((0.5, 0.9), (2.0, 0.6)):
        root = tmp_path / f"lambda-{lam}"
        root.mkdir()
        (root / "results.json").write_text(json.dumps(run(0, acc, lam)))
        roots.append(root)
    table = compare(roots)
    assert table.count("| Talos |") == 2
    assert table.count("| 1 | not evaluated | not evaluated | not evaluated |") == 2
    assert (tmp_path / "tradeoff.png").is_file()
