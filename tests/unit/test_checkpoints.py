"""LastCheckpoint's triggers on a tiny model, and reading checkpoints back (newest, corrupt)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_talos.errors import UserError
from lightning_talos.runs import checkpoints
from lightning_talos.runs.checkpoints import LastCheckpoint, read_progress, resume_checkpoint
from lightning_talos.stages.trainer import AtomicCheckpointIO


class Tiny(pl.LightningModule):
    """Three optimizer steps per epoch (six samples, batches of two)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2)


def _saved_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, callback: LastCheckpoint
) -> list[int]:
    """Global steps at which ``callback`` wrote its file during a 2-epoch fit."""
    steps: list[int] = []
    original = pl.Trainer.save_checkpoint

    def record(trainer: pl.Trainer, path: object, *args: object, **kwargs: object) -> None:
        steps.append(trainer.global_step)
        original(trainer, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", record)
    trainer = pl.Trainer(
        max_epochs=2, callbacks=[callback], logger=False, enable_progress_bar=False,
        enable_model_summary=False, plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(Tiny())
    return steps


def test_every_epoch_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    assert _saved_steps(tmp_path, monkeypatch, LastCheckpoint(path)) == [3, 6]
    assert read_progress(path, rebuild="x") == checkpoints.Progress(epochs=2, global_step=6)


def test_every_n_steps_adds_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    callback = LastCheckpoint(tmp_path / "last.ckpt", every_n_steps=2)
    # step 6 is both a multiple of 2 and an epoch end: written once
    assert _saved_steps(tmp_path, monkeypatch, callback) == [2, 3, 4, 6]


@pytest.mark.parametrize(("minutes", "expected"), [(1.0, [1, 2, 3, 4, 5, 6]), (1e6, [3, 6])])
def test_every_minutes(
    minutes: float, expected: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(0, 10**6, 3600))  # an hour passes at every look at the clock
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: float(next(clock)))
    callback = LastCheckpoint(tmp_path / "last.ckpt", every_minutes=minutes)
    assert _saved_steps(tmp_path, monkeypatch, callback) == expected


@pytest.mark.parametrize("kwargs", [{"every_n_steps": 0}, {"every_minutes": 0.0}])
def test_bad_interval_refused(kwargs: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LastCheckpoint(tmp_path / "last.ckpt", **kwargs)


def _fake_checkpoint(path: Path, *, epochs: int, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    loops = {"fit_loop": {"epoch_progress": {"current": {"processed": epochs}}}}
    torch.save({"global_step": step, "loops": loops, "state_dict": {}}, path)


def test_resume_picks_the_checkpoint_with_most_steps(tmp_path: Path) -> None:
    assert resume_checkpoint(tmp_path, rebuild="x") is None
    _fake_checkpoint(tmp_path / "checkpoints" / "last.ckpt", epochs=2, step=4)
    _fake_checkpoint(tmp_path / "hpc_ckpt_1.ckpt", epochs=2, step=5)  # SLURM requeue save
    path, progress = resume_checkpoint(tmp_path, rebuild="x")  # type: ignore[misc]
    assert path.name == "hpc_ckpt_1.ckpt" and progress.global_step == 5
    _fake_checkpoint(tmp_path / "checkpoints" / "last.ckpt", epochs=3, step=6)
    path, progress = resume_checkpoint(tmp_path, rebuild="x")  # type: ignore[misc]
    assert path.name == "last.ckpt" and progress == checkpoints.Progress(3, 6)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_checkpoint_is_one_line_naming_file_and_command(
    damage: str, tmp_path: Path
) -> None:
    path = tmp_path / "last.ckpt"
    _fake_checkpoint(path, epochs=1, step=2)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    else:
        torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError) as err:
        read_progress(path, rebuild="lightning-talos pretrain run.resume=never")
    message = str(err.value)
    assert str(path) in message and "lightning-talos pretrain run.resume=never" in message
    assert "\n" not in message
