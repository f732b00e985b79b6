"""Step scalars logged as window means at exactly the steps Lightning writes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers.logger import Logger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_talos.modules.window import WindowMeans, log_window, writes_this_step


def test_window_means_then_restarts() -> None:
    window = WindowMeans()
    assert window.pop() == {}
    window.add(loss=torch.tensor(1.0), lam=0.5)
    window.add(loss=torch.tensor(3.0), lam=1.5)
    assert len(window) == 2
    means = window.pop()
    assert float(means["loss"]) == 2.0 and float(means["lam"]) == 1.0
    assert len(window) == 0 and window.pop() == {}
    window.add(loss=torch.tensor(5.0), lam=0.0)
    assert float(window.pop()["loss"]) == 5.0


def test_window_refuses_changed_names() -> None:
    window = WindowMeans()
    window.add(loss=torch.tensor(1.0))
    with pytest.raises(ValueError, match="loss"):
        window.add(acc=torch.tensor(1.0))


def _trainer(every: int, per_epoch: float, fast_dev_run: bool = False) -> Any:
    return SimpleNamespace(
        log_every_n_steps=every, num_training_batches=per_epoch, fast_dev_run=fast_dev_run
    )


@pytest.mark.parametrize(
    ("every", "per_epoch", "epoch", "batch_idx", "expected"),
    [
        (10, 25, 0, 9, True),  # the 10th batch
        (10, 25, 0, 10, False),
        (10, 25, 1, 4, True),  # batch 30 overall
        (10, 25, 1, 5, False),
        (1, 25, 0, 3, True),
        (10, float("inf"), 0, 3, True),  # unknown epoch length: every step
    ],
)
def test_writes_this_step(
    every: int, per_epoch: float, epoch: int, batch_idx: int, expected: bool
) -> None:
    assert writes_this_step(_trainer(every, per_epoch), epoch, batch_idx) is expected
    assert writes_this_step(_trainer(every, per_epoch, fast_dev_run=True), epoch, batch_idx)


class _Capture(Logger):
    """Keeps every (step, metrics) the Trainer writes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((int(step or 0), dict(metrics)))


class _Steps(pl.LightningModule):
    """Logs each batch's mean target through a window; remembers the per-step values."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.window = WindowMeans()
        self.values: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        (y,) = batch
        value = y.float().mean()
        self.values.append(float(value))
        self.window.add(value=value)
        log_window(self, self.window, batch_idx)
        return (self.weight * 0).sum() + self.weight.square().sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_logged_points_are_window_means_at_lightning_write_steps(tmp_path: Any) -> None:
    data = DataLoader(TensorDataset(torch.arange(6.0)), batch_size=2)  # 3 batches an epoch
    module, logger = _Steps(), _Capture()
    pl.Trainer(
        max_epochs=3, log_every_n_steps=2, logger=logger, default_root_dir=tmp_path,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    ).fit(module, data)  # fmt: skip
    written = [(step, m["train/value"]) for step, m in logger.rows if "train/value" in m]
    values = module.values  # 9 steps: 0.5, 2.5, 4.5, 0.5, ...
    expected = [sum(values[i : i + 2]) / 2 for i in (0, 2, 4, 6)]  # windows end at 2, 4, 6, 8
    assert [v for _, v in written] == pytest.approx(expected)
    assert len({step for step, _ in written}) == len(written)  # one point per write
