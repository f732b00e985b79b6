"""LEACE and DP-SGD through the pipeline: a tiny audit that asks for them (two epsilons) writes
their entries, records and the frontier; each trains from its single-stage command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.data.datamodule import TalosDataModule
from lightning_talos.report.report import compare
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.defences import load_dp_supervised, load_leace
from lightning_talos.stages.registry import DP_SUPERVISED, LEACE, REGISTRY, unregister
from lightning_talos.stages.results import validate_results
from tests.conftest import TINY_ARGS

TINY = [
    *TINY_ARGS,
    "mia.label_only_samples=4",
    "mia.hsj_iterations=1",
    "mia.hsj_grad_samples=4",
    "mia.aug_n=2",
    "dp.max_epochs=1",
    "attacks=[metric,nn]",
]
EPS1, EPS8 = f"{DP_SUPERVISED}_eps1", f"{DP_SUPERVISED}_eps8"


@pytest.fixture(scope="module")
def clean_registry() -> Iterator[None]:
    before = set(REGISTRY.train) | set(REGISTRY.methods)
    yield
    for name in (set(REGISTRY.train) | set(REGISTRY.methods)) - before:
        unregister(name)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, clean_registry: None) -> Path:
    root = tmp_path_factory.mktemp("defences")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        mp.setenv("HOME", str(root))
        args = [*TINY, f"run.dir={root}", "run.name=tiny",
                f"methods=[supervised,{LEACE},{DP_SUPERVISED}]", "dp.epsilon=[1,8]"]  # fmt: skip
        assert main(["audit", *args]) == 0
    return root / "tiny"


def test_audit_writes_one_entry_per_epsilon_with_its_record(audited: Path) -> None:
    results = json.loads((audited / "results.json").read_text())
    assert validate_results(results) == []
    assert results[DP_SUPERVISED] is None  # a list of epsilons: one entry per value instead
    quarter = results["meta"]["quarter_size"]
    for name, target in ((EPS1, 1.0), (EPS8, 8.0)):
        entry = results[name]
        assert entry["mia"] and entry["aia"] and entry["utility"]
        record = entry["defence"]
        assert record["target_epsilon"] == target
        # the accountant's epsilon for the steps taken: at most the target, within 5% of it
        assert 0.95 * target <= record["epsilon"] <= target
        assert record["delta"] == min(1 / (2 * quarter), 1e-5)
        assert record["max_grad_norm"] == 1.0 and record["noise_multiplier"] > 0
        assert (audited / f"{name}-target" / "checkpoints" / "last.ckpt").is_file()
    # more privacy, more noise
    assert (
        results[EPS1]["defence"]["noise_multiplier"] > results[EPS8]["defence"]["noise_multiplier"]
    )
    assert results[LEACE]["defence"]["defence"] == "concept_erasure"
    assert results[LEACE]["defence"]["rank_erased"] == 1  # a binary attribute: one direction


def test_report_and_compare_draw_the_frontier(audited: Path) -> None:
    report = (audited / "report.md").read_text()
    section = report.split("## Privacy-utility frontier")[1]
    for label in ("| Supervised |", "| LEACE |", "| DP-SGD eps=1 |", "| DP-SGD eps=8 |"):
        assert label in section
    assert (audited / "frontier.png").is_file()
    text = compare([audited, audited])
    assert "tiny: DP-SGD eps=8" in text  # several runs: labels carry the run
    assert (audited.parent / "frontier.png").is_file()


def test_leace_model_exposes_erased_embeddings(audited: Path) -> None:
    """In-sample, the defended model's embeddings of the target's train quarter have equal
    attribute-class means (what the eraser was fitted to guarantee)."""
    ctx = RunContext(compose([*TINY, f"run.dir={audited.parent}", "run.name=tiny"]))
    model = load_leace(audited / f"{LEACE}-target" / "checkpoints" / "last.ckpt").eval()
    dm = TalosDataModule(ctx.cfg.data, ctx.pool, ctx.splits, role="target", use="eval")
    with torch.no_grad():
        batches = list(dm.eval_loader(ctx.splits.members("target")))
        h = torch.cat([model.embed(b.image) for b in batches])
        raw = torch.cat([model.encoder_embed(b.image) for b in batches])
    z = torch.cat([torch.as_tensor(b.attribute) for b in batches])
    gap = (h[z == 0].mean(0) - h[z == 1].mean(0)).norm()
    raw_gap = (raw[z == 0].mean(0) - raw[z == 1].mean(0)).norm()
    assert gap < 1e-4 * raw_gap


def test_single_stage_commands(tmp_path: Path, clean_registry: None) -> None:
    args = [*TINY, f"run.dir={tmp_path}", "run.name=single"]
    root = tmp_path / "single"
    assert main(["pretrain", *args]) == 0
    assert main(["linear", *args, f"method={LEACE}"]) == 0
    assert json.loads((root / f"{LEACE}-target" / "metrics.json").read_text())["defence"]
    assert main([DP_SUPERVISED, *args, "dp.epsilon=2", "trainer.precision=bf16-mixed"]) == 0
    record = json.loads((root / f"{DP_SUPERVISED}-target" / "metrics.json").read_text())["defence"]
    assert 1.9 <= record["epsilon"] <= 2.0  # ran in full precision despite trainer.precision
    model = load_dp_supervised(root / f"{DP_SUPERVISED}-target" / "checkpoints" / "last.ckpt")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # a list of epsilons: the command trains the variant its method names
    assert main([DP_SUPERVISED, *args, "dp.epsilon=[1,8]", f"method={EPS8}"]) == 0
    assert (root / f"{EPS8}-target" / "metrics.json").is_file()
    assert main([DP_SUPERVISED, *args, "dp.epsilon=[1,8]"]) == 2  # which one? a user error
