"""The benchmark runs end to end on a tiny configuration (it is not a test of speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_talos.bench.demo import load_reference, predict
from lightning_talos.bench.launchers import AUDIT_ARGS, audit_local_vs_sequential
from lightning_talos.bench.run import main
from lightning_talos.precision import resolve_precision
from lightning_talos.threads import available_cores

TINY = [
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.synthetic.quarter_size=16",
    "mia.nn_epochs=2",
    "aia.mlp_epochs=2",
    "mia.bootstrap=10",
    "aia.bootstrap=10",
    "aia.knn_k=3",
    "mia.label_only_samples=4",
    "mia.hsj_iterations=1",
    "mia.hsj_grad_samples=2",
    "mia.aug_samples=8",
    "mia.aug_n=2",
]
HEADLINES = (
    "lightning_vs_plain",
    "datapath_vs_model",
    "aug_batched_vs_pil",
    "attacks_vs_extraction",
)


def test_bench_writes_ratios_and_details(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_STEPS", "1")
    monkeypatch.setenv("BENCH_ROUNDS", "2")
    monkeypatch.setenv("BENCH_CONCURRENT", "0")  # see test_bench_concurrent.py
    monkeypatch.setenv("BENCH_AUDIT", "0")  # two audits: see test_audit_ratio_times_both_launchers
    monkeypatch.setenv("BENCH_SLURM", "0")
    monkeypatch.delenv("BENCH_OUT", raising=False)
    main(TINY)
    report = json.loads((tmp_path / "bench.json").read_text())
    for key in HEADLINES:
        assert isinstance(report[key], float) and report[key] > 0, key
        details = report["details"][key]
        assert details["backbone"] == "small_cnn"
        assert details["image_size"] == 32
        assert details["batch"] == 8
        assert details["precision"] == resolve_precision("auto", "cpu")[0]  # trainer=cpu
    assert report["details"]["bf16_channels_last_vs_fp32"]["bf16_loss_first_last"]
    assert report["machine"]["torch"] and report["machine"]["lightning"]
    demo = report["details"]["demo_predicted_s"]
    assert demo["images_per_s"] > 0 and demo["demo_threads"] == available_cores()
    predicted = predict(load_reference(), demo["images_per_s"])  # the packaged reference
    if predicted is None:
        assert report["demo_predicted_s"] is None
    else:
        assert report["demo_predicted_s"] == pytest.approx(predicted)
    for key in ("concurrent_vs_alone", "audit_local_vs_sequential", "slurm_submit_to_start_s"):
        assert report[key] is None  # skipped, and said so
        assert report["targets"][key]["met"] is None


def test_audit_ratio_times_both_launchers_on_the_same_audit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BENCH_AUDIT", raising=False)
    monkeypatch.setenv("BENCH_AUDIT_ROUNDS", "1")
    seconds = {"none": 10.0, "local": 7.5}
    calls: list[list[str]] = []

    def run(args: list[str]) -> float:
        calls.append(list(args))
        launcher = next(a.split("=")[1] for a in args if a.startswith("launcher="))
        return seconds[launcher]

    result = audit_local_vs_sequential(None, run=run)  # type: ignore[arg-type]
    assert result["ratio"] == pytest.approx(0.75)
    assert calls[0][:-1] == calls[1][:-2] == list(AUDIT_ARGS)  # the same audit both times
    assert calls[1][-1] == "launcher.parallel=2"
