"""``PrivacyAudit`` on a user's own LightningModule (written here, not one of the framework's).

A small MLP classifier memorises a few noisy-labelled synthetic images: its loss on members
falls away from the non-members' epoch after epoch, so the membership AUC must rise, and the
callback must log it through the trainer's logger, keep the module's train/eval modes and write
``privacy_history.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_talos.callbacks import PrivacyAudit
from lightning_talos.data.formats.synthetic import make_synthetic

N_MEMBERS = 48
IMAGE_SIZE = 12


class TinyClassifier(pl.LightningModule):
    """A user's model: an MLP on flattened pixels, with a frozen (always eval) input norm."""

    def __init__(self, num_classes: int = 8, lr: float = 3e-3) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(3 * IMAGE_SIZE * IMAGE_SIZE)  # kept in eval: a frozen part
        self.net = nn.Sequential(
            nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )
        self.lr = lr
        self.modes_seen: list[tuple[bool, bool]] = []

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[:2](self.norm(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x.flatten(1)))

    def on_train_epoch_start(self) -> None:
        self.norm.eval()

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        self.modes_seen.append((self.training, self.norm.training))
        x, y = batch[0], batch[1]
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def datasets(
    n_members: int = N_MEMBERS, n_nonmembers: int = 96
) -> tuple[TensorDataset, TensorDataset]:
    """Members and non-members ``(x, y, a)``: noisy shape labels, stripe orientation."""
    pool = make_synthetic(n=n_members + n_nonmembers, image_size=IMAGE_SIZE, seed=0,
                          label_noise=0.5)  # fmt: skip
    x = pool.images.float() / 255.0
    y, a = torch.from_numpy(pool.labels), torch.from_numpy(pool.attributes)

    def part(s: slice) -> TensorDataset:
        return TensorDataset(x[s], y[s], a[s])

    return part(slice(0, n_members)), part(slice(n_members, None))


def callback(members: TensorDataset, nonmembers: TensorDataset, **kwargs) -> PrivacyAudit:
    return PrivacyAudit(
        members, nonmembers, every_n_epochs=5, attribute="logistic",
        embed_fn=lambda module, x: module.embed(x), batch_size=32, **kwargs,
    )  # fmt: skip


def train(tmp_path: Path, audit: PrivacyAudit, **trainer_kwargs) -> TinyClassifier:
    torch.manual_seed(0)
    members, _ = datasets()
    model = TinyClassifier()
    trainer = pl.Trainer(
        max_epochs=40, logger=CSVLogger(tmp_path, name="user"), callbacks=[audit],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        log_every_n_steps=1, **trainer_kwargs,
    )  # fmt: skip
    loader = DataLoader(members, batch_size=16, shuffle=True)
    trainer.fit(model, loader)
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrivacyAudit, TinyClassifier, Path]:
    tmp = tmp_path_factory.mktemp("privacy")
    audit = callback(*datasets())
    model = train(tmp, audit, accelerator="cpu", devices=1)
    return audit, model, tmp


def test_membership_auc_rises_as_the_model_overfits(trained: tuple) -> None:
    audit, _, _ = trained
    history = audit.history
    assert [row["epoch"] for row in history] == [4, 9, 14, 19, 24, 29, 34, 39]
    first, last = history[0], history[-1]
    # the model memorises its noisy labels: loss AUC well above chance, above the first audit
    assert last["loss/auc"] > 0.85
    assert last["loss/auc"] > first["loss/auc"] + 0.2
    assert last["generalization_gap"] > 0.5
    assert last["train_acc"] == pytest.approx(1.0)
    for row in history:
        for attack in ("loss", "confidence", "entropy", "modified_entropy"):
            assert 0.0 <= row[f"{attack}/tpr_at_0p1pct_fpr"] <= row[f"{attack}/tpr_at_1pct_fpr"]
            assert 0.0 <= row[f"{attack}/auc"] <= 1.0
        assert 0.0 <= row["attribute/acc"] <= 1.0
    # the loss and the true-class confidence rank samples the same way (monotone map)
    assert last["loss/auc"] == pytest.approx(last["confidence/auc"])


def test_modes_are_restored_and_history_logged(trained: tuple) -> None:
    audit, model, tmp = trained
    # every training step ran in train mode with the frozen part still in eval
    assert set(model.modes_seen) == {(True, False)}
    log_dir = tmp / "user" / "version_0"
    assert json.loads((log_dir / "privacy_history.json").read_text()) == audit.history
    with (log_dir / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("privacy/loss/auc")]
    logged = [float(r["privacy/loss/auc"]) for r in rows]
    assert logged == pytest.approx([row["loss/auc"] for row in audit.history])
    assert "privacy/generalization_gap" in rows[0]


def test_audit_equals_a_direct_computation(trained: tuple) -> None:
    """The AUC of the loss score, recomputed here by ranking, matches the last audit."""
    audit, model, _ = trained
    members, nonmembers = datasets()
    model.eval()
    with torch.no_grad():
        losses = [
            nn.functional.cross_entropy(model(d.tensors[0]), d.tensors[1], reduction="none")
            for d in (members, nonmembers)
        ]
    m, n = (loss.double().numpy() for loss in losses)
    # AUC = P(member loss < non-member loss) + 1/2 P(tie)
    direct = np.mean((m[:, None] < n[None]) + 0.5 * (m[:, None] == n[None]))
    assert audit.audit(model)["loss/auc"] == pytest.approx(direct, abs=1e-9)
    assert audit.history[-1]["loss/auc"] == pytest.approx(direct, abs=1e-9)


def test_bad_settings_are_refused() -> None:
    members, nonmembers = datasets(4, 4)
    with pytest.raises(ValueError, match="every_n_epochs"):
        PrivacyAudit(members, nonmembers, every_n_epochs=0)
    with pytest.raises(ValueError, match="attacks"):
        PrivacyAudit(members, nonmembers, attacks=("lira",))
    with pytest.raises(ValueError, match="attribute"):
        PrivacyAudit(members, nonmembers, attribute="svm")


def test_framework_stage_records_its_privacy_history(tiny_args: list[str], tmp_path: Path) -> None:
    """``trainer.privacy_audit_every_n_epochs`` on the framework's supervised stage: one row
    per epoch in the stage folder, and the report's AUC-vs-epochs figure drawn from it."""
    from lightning_talos.cli import main
    from lightning_talos.report.privacy import plot_privacy_history

    args = [*tiny_args, "supervised.max_epochs=2", "trainer.privacy_audit_every_n_epochs=1"]
    assert main(["supervised", *args]) == 0
    root = tmp_path / "runs" / "default"
    history = json.loads((root / "supervised-target" / "privacy_history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]
    for row in history:
        assert 0.0 <= row["loss/auc"] <= 1.0
        assert row["generalization_gap"] == pytest.approx(row["train_acc"] - row["test_acc"])
        assert 0.0 <= row["attribute/acc"] <= 1.0  # synthetic has a sensitive attribute
    metrics = json.loads((root / "supervised-target" / "metrics.json").read_text())
    # the audit's member accuracy is the stage's own (same model, same members, eval mode)
    assert history[-1]["train_acc"] == pytest.approx(metrics["val/member_acc"], abs=1e-6)
    figure = plot_privacy_history(root)
    assert figure is not None and figure.is_file()


def test_without_a_logger_the_history_stays_in_memory(tmp_path: Path) -> None:
    members, nonmembers = datasets(16, 16)
    audit = PrivacyAudit(members, nonmembers, attacks=("loss",))
    trainer = pl.Trainer(
        max_epochs=2, logger=False, default_root_dir=tmp_path, callbacks=[audit],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        accelerator="cpu",
    )  # fmt: skip
    trainer.fit(TinyClassifier(), DataLoader(members, batch_size=8))
    assert [row["epoch"] for row in audit.history] == [0, 1]
    assert set(audit.history[0]) == {
        "epoch", "loss/auc", "loss/tpr_at_1pct_fpr", "loss/tpr_at_0p1pct_fpr", "loss/advantage",
        "train_acc", "test_acc", "generalization_gap",
    }  # fmt: skip
    assert not list(tmp_path.rglob("privacy_history.json"))
