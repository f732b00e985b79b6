"""The stage profile: host counters, the step/data split of a fit, its table, the demo's
prediction."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_talos.bench.demo import load_reference, predict, refresh_reference, write_reference
from lightning_talos.callbacks.profile import StepProfile
from lightning_talos.errors import UserError
from lightning_talos.profiling import HostSample, host_profile, host_sample
from lightning_talos.report.profile import profile_table
from lightning_talos.report.readme_blocks import _bench


def _stat(path: Path, user: int, steal: int) -> Path:
    # user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {user} 0 10 {1000 - user} 0 0 0 {steal} 7 0\ncpu0 1 2 3\n")
    return path


def test_host_profile_reads_steal_as_a_share_of_the_machine_s_ticks(tmp_path: Path) -> None:
    first = host_sample(_stat(tmp_path / "a", user=100, steal=50))
    second = host_sample(_stat(tmp_path / "b", user=400, steal=150))
    # totals: 100+10+900+50 = 1060, then 400+10+600+150 = 1160 (guest not counted twice)
    assert (first.steal, first.ticks, second.steal, second.ticks) == (50, 1060, 150, 1160)
    start = HostSample(wall=10.0, cpu=1.0, steal=first.steal, ticks=first.ticks)
    end = HostSample(wall=14.0, cpu=7.0, steal=second.steal, ticks=second.ticks)
    profile = host_profile(start, end, threads=2)
    assert profile == {
        "wall_s": 4.0,
        "cpu_s": 6.0,
        "cores_busy": 1.5,
        "threads": 2,
        "steal_fraction": 1.0,  # 100 of the 100 ticks between the two readings
    }


def test_an_unreadable_stat_file_leaves_steal_unknown(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("intr 1 2 3\n")
    for path in (tmp_path / "bad", tmp_path / "missing"):
        sample = host_sample(path)
        assert (sample.steal, sample.ticks) == (None, None)
        assert host_profile(sample, sample, threads=1)["steal_fraction"] is None


class _Slow(Dataset):
    """Four batches of three images; fetching each takes ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(self.delay)
        return torch.randn(3, 2), torch.zeros(3, dtype=torch.long)


class _Module(pl.LightningModule):
    def __init__(self, step_delay: float) -> None:
        super().__init__()
        self.layer, self.step_delay = torch.nn.Linear(2, 2), step_delay

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        time.sleep(self.step_delay)
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_step_profile_splits_a_fit_into_steps_and_data_waits() -> None:
    profile = StepProfile()
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[profile],
    )  # fmt: skip
    trainer.fit(_Module(step_delay=0.06), DataLoader(_Slow(delay=0.02), batch_size=None))
    summary = profile.summary()
    assert summary["steps"] == 8 and profile.images == 24  # 2 epochs x 4 batches of 3
    assert summary["step_ms"] >= 60  # the step's sleep, plus Lightning's own work
    assert 20 <= summary["data_ms"] < summary["step_ms"]
    assert summary["fit_s"] >= 8 * 0.08
    # the parts never exceed the whole
    assert profile.step_s + profile.data_s <= profile.fit_s
    assert summary["images_per_s"] == pytest.approx(24 / profile.fit_s, rel=0.01)


def _results(seeds: list[int]) -> dict:
    profile = {
        "pretrain-target": {"wall_s": 60.0, "cpu_s": 114.0, "threads": 2, "cores_busy": 1.9,
                            "steal_fraction": 0.02, "steps": 320, "step_ms": 150.0,
                            "data_ms": 2.0, "fit_s": 55.0, "images_per_s": 900.0},
        "mia-supervised": {"wall_s": 40.0, "cpu_s": 46.0, "threads": 2, "cores_busy": 1.15,
                           "steal_fraction": 0.125},
    }  # fmt: skip
    return {"meta": {"seeds": seeds, "profile": profile}}


def test_the_profile_table_has_a_row_per_stage_and_sums_the_run() -> None:
    text = profile_table(_results([0]))
    lines = text.splitlines()
    assert lines[0] == (
        "Where the time went: 100 s in 2 stages, 1.60 cores busy on average, "
        "at most 12.5% of the CPU stolen by the hypervisor."
    )
    assert (
        lines[4]
        == "| pretrain-target | 60.0 | 2 | 1.90 | 2.0% | 320 | 150.0 | 2.0 | 55.0 | 5.0 | 900 |"
    )
    assert lines[5] == "| mia-supervised | 40.0 | 2 | 1.15 | 12.5% | – | – | – | – | – | – |"
    assert lines[2].count("|") == lines[3].count("|") == lines[4].count("|")
    assert "(seed 3)" in profile_table(_results([3, 4]))
    assert profile_table({"meta": {}}) == ""


def _demo(commit: str = "abc", cpu: str = "CPU X", seeds: tuple[int, ...] = (0,)) -> dict:
    return {"meta": {"git_commit": commit, "machine": {"cpu": cpu, "cores": 2},
                     "precision": {"precision": "bf16-mixed"}, "seeds": list(seeds),
                     "wall_time_s": {"a": 200.0, "b": 100.0}}}  # fmt: skip


def _bench_report(commit: str = "abc", cpu: str = "CPU X", ips: float = 500.0) -> dict:
    return {"git_commit": commit, "machine": {"cpu": cpu}, "config": {"precision": "bf16-mixed"},
            "details": {"demo_predicted_s": {"images_per_s": ips}}}  # fmt: skip


def test_the_prediction_scales_the_reference_demo_by_the_throughput_ratio(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    assert write_reference(_demo(), _bench_report(), path)
    reference = load_reference(path)
    assert reference is not None and reference["demo_s"] == 300.0
    assert predict(reference, 500.0) == pytest.approx(300.0)
    assert predict(reference, 250.0) == pytest.approx(600.0)  # half the throughput: twice as long
    assert predict(None, 250.0) is None and predict(reference, 0.0) is None


@pytest.mark.parametrize(
    "demo, report",
    [
        (_demo(commit="abc"), _bench_report(commit="def")),
        (_demo(cpu="CPU X"), _bench_report(cpu="CPU Y")),
        (_demo(seeds=(0, 1, 2)), _bench_report()),
        (_demo(), {**_bench_report(), "details": {}}),
    ],
    ids=["other commit", "other cpu", "three seeds", "no throughput"],
)
def test_a_reference_is_only_written_from_a_matching_pair(
    demo: dict, report: dict, tmp_path: Path
) -> None:
    path = tmp_path / "ref.json"
    assert not write_reference(demo, report, path)
    assert not path.exists()


def test_refresh_reads_the_demo_run_and_the_bench_and_a_bad_reference_is_one_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ref.json"
    assert "kept" in refresh_reference(tmp_path, path)  # nothing to read
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "results.json").write_text(json.dumps(_demo()))
    report = {
        **_bench_report(ips=250.0),
        "demo_predicted_s": None,
        "targets": {"demo_predicted_s": {"target": 600.0, "kind": "max", "met": None}},
    }
    (tmp_path / "bench.json").write_text(json.dumps(report))
    assert "rewritten" in refresh_reference(tmp_path, path)
    assert json.loads(path.read_text())["images_per_s"] == 250.0
    # the bench's prediction is recomputed from its own measurement and the new reference
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["demo_predicted_s"] == 300.0 and bench["targets"]["demo_predicted_s"]["met"]
    assert bench["details"]["demo_predicted_s"]["reference"]["demo_s"] == 300.0
    path.write_text('{"demo_s": 1}')
    with pytest.raises(UserError, match="not a demo reference"):
        load_reference(path)


def test_the_bench_block_says_how_the_demo_prediction_was_reached(tmp_path: Path) -> None:
    reference = {"demo_s": 300.0, "images_per_s": 500.0, "cpu": "CPU X", "git_commit": "abc123"}
    report = {"git_commit": "abc123", "wall_s": 100, "machine": {"cpu": "CPU Y", "cpu_count": 2},
              "config": {"precision": "32-true"}, "demo_predicted_s": 600.0,
              "targets": {"demo_predicted_s": {"target": 600.0, "kind": "max", "met": True}},
              "details": {"demo_predicted_s": {"images_per_s": 250.0, "demo_threads": 2,
                                               "reference": reference}}}  # fmt: skip
    (tmp_path / "bench.json").write_text(json.dumps(report))
    text = _bench(tmp_path / "bench.json", "make bench")
    assert "| `demo_predicted_s` | 600.00 | <= 600 | yes |" in text
    assert "250 images/s with 2 threads here, against 500 images/s" in text
    assert "CPU Y" in text and "whose demo stages took 300 s" in text
