"""DP-SGD: GroupNorm backbones, per-sample clipping, Poisson batches, the accountant's epsilon."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from opacus.accountants import RDPAccountant
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_talos.data.datamodule import Sample, collate
from lightning_talos.defences.dp import (
    EmptySafeCollate,
    PoissonDataModule,
    default_delta,
    noise_for_epsilon,
    poisson_loader,
)
from lightning_talos.errors import UserError
from lightning_talos.models.backbones import BACKBONES, build_backbone
from lightning_talos.models.norm import build_groupnorm_backbone, num_groups
from lightning_talos.modules.dp_classifier import DPSupervisedClassifier

SGD = {
    "name": "sgd",
    "lr": 0.1,
    "weight_decay": 0.0,
    "momentum": 0.0,
    "schedule": "constant",
    "warmup_epochs": 0.0,
}


class Toy(Dataset):
    """``n`` 8x8 images whose brightness carries a binary label."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x = torch.rand(n, 3, 8, 8, generator=g) + 0.5 * self.y[:, None, None, None]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        return Sample(i, self.x[i], int(self.y[i]), 0)


class ToyData(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.members, self.nonmembers = Toy(64, 0), Toy(64, 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.members, batch_size=16, shuffle=True, collate_fn=collate)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(d, batch_size=64, collate_fn=collate)
            for d in (self.members, self.nonmembers)
        ]


def dp_module(**overrides) -> DPSupervisedClassifier:
    settings = {
        "backbone": "small_cnn",
        "stem": "cifar",
        "num_classes": 2,
        "optim": SGD,
        "train_size": 64,
        "batch_size": 16,
        "epochs": 2,
        "epsilon": 4.0,
    }
    return DPSupervisedClassifier(**{**settings, **overrides})


def trainer(tmp_path: Path, max_epochs: int, **kw) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **kw,
    )


def independent_epsilon(noise: float, sample_rate: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(noise, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta=delta))


# --- GroupNorm backbones -------------------------------------------------------------------------


def test_num_groups_keeps_four_channels_per_group() -> None:
    assert [num_groups(c) for c in (16, 32, 64, 96, 144, 512, 1280, 3)] == [
        4,
        8,
        16,
        24,
        24,
        32,
        32,
        1,
    ]


@pytest.mark.parametrize("name", BACKBONES)
def test_groupnorm_backbones_have_no_batchnorm_and_pass_opacus(name: str) -> None:
    net, dim = build_groupnorm_backbone(name, stem="cifar")
    assert dim == build_backbone(name, stem="cifar")[1]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    assert ModuleValidator.validate(net, strict=False) == []


def test_dp_module_has_no_batchnorm() -> None:
    module = dp_module()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    assert module.embed(torch.rand(3, 3, 8, 8)).shape == (3, module.embed_dim)


# --- per-sample gradients and clipping ----------------------------------------------------------


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = Toy(n, seed)
    return data.x, data.y


@pytest.mark.parametrize("channels_last", [False, True])
def test_per_sample_gradients_equal_one_sample_at_a_time(channels_last: bool) -> None:
    """Also with the configs' ``channels_last: true``, which the module must ignore: Opacus'
    conv per-sample gradients are wrong in that layout."""
    torch.manual_seed(0)
    module = dp_module(channels_last=channels_last)
    assert module.hparams.channels_last is False
    module.train()
    optimizer = module.dp_optimizer()
    x, y = _batch(4, seed=3)
    F.cross_entropy(module(x), y).backward()
    params = [p for p in module.parameters() if p.requires_grad]
    per_sample = [p.grad_sample.clone() for p in params]
    optimizer.zero_grad()
    module.remove_dp_hooks()
    for i in range(4):
        module.zero_grad()
        F.cross_entropy(module(x[i : i + 1]), y[i : i + 1]).backward()
        for p, gs in zip(params, per_sample):
            # float32: Opacus' einsum and autograd sum the five-conv net's weight gradients in
            # different orders (one element of 147,456 differed by 2.2e-5); the channels-last
            # bug this guards against was off by 0.6.
            torch.testing.assert_close(gs[i], p.grad, atol=1e-4, rtol=1e-3)


def _update_from(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Parameter change of one noise-free DP-SGD step (SGD, lr 1) on a weighted loss."""
    torch.manual_seed(0)
    module = dp_module(optim={**SGD, "lr": 1.0}, max_grad_norm=0.5)
    module.train()
    optimizer = module.dp_optimizer()
    optimizer.noise_multiplier = 0.0
    before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    losses = F.cross_entropy(module(x), y, reduction="none")
    (losses * weights).mean().backward()
    optimizer.step()
    after = torch.cat([p.detach().flatten() for p in module.parameters()])
    return after - before


def test_outlier_contribution_is_clipped_to_max_grad_norm() -> None:
    """A sample whose raw gradient is 1e6 times larger moves the model by at most
    ``max_grad_norm / expected_batch_size`` (lr 1): its clipped contribution has norm C."""
    x, y = _batch(9, seed=4)
    outlier = torch.ones(9)
    outlier[-1] = 1e6
    with_outlier = _update_from(x, y, outlier)
    without = _update_from(x[:-1], y[:-1], torch.ones(8))
    contribution = (with_outlier - without).norm() * 16  # expected batch size 16
    assert contribution == pytest.approx(0.5, rel=1e-3)
    # the same step without clipping would have moved by about 1e6 times more
    torch.manual_seed(0)
    plain = dp_module()
    raw = torch.autograd.grad(
        1e6 * F.cross_entropy(plain(x[-1:]), y[-1:]), [p for p in plain.parameters()]
    )
    assert torch.cat([g.flatten() for g in raw]).norm() > 1e3


def test_empty_poisson_batch_is_a_noisy_counted_step() -> None:
    data = Toy(8, seed=5)
    loader = DataLoader(data, batch_size=4, collate_fn=collate)
    empty = EmptySafeCollate(collate, data[0])([])
    assert isinstance(empty, Sample) and empty.image.shape == (0, 3, 8, 8)
    assert poisson_loader(loader, sample_rate=0.5).batch_sampler.sample_rate == 0.5
    module = dp_module()
    module.train()
    optimizer = module.dp_optimizer()
    before = [p.detach().clone() for p in module.parameters()]
    module.training_step(empty, 0).backward()
    module.on_before_optimizer_step(optimizer)  # Lightning calls it between backward and step
    optimizer.step()
    assert module.privacy_spent()["steps"] == 1
    moved = [not torch.equal(b, p) for b, p in zip(before, module.parameters())]
    assert all(moved)  # noise only, on every parameter


# --- accounting inside Lightning -----------------------------------------------------------------


def test_tiny_run_records_the_accountants_epsilon(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = dp_module()
    dm = module.wrap_datamodule(ToyData())
    assert isinstance(dm, PoissonDataModule) and dm.sample_rate == 0.25
    fit = trainer(tmp_path, 2)
    fit.fit(module, datamodule=dm)
    spent = module.privacy_spent()
    assert spent["steps"] == spent["planned_steps"] == 8  # 2 epochs x int(1 / 0.25)
    assert spent["delta"] == 1e-5  # min(1 / 128, 1e-5)
    reference = independent_epsilon(module.noise_multiplier, 0.25, 8, 1e-5)
    logged = float(fit.callback_metrics["dp/epsilon"])
    assert logged == pytest.approx(reference, rel=0.05)
    assert reference <= 4.0 and reference == pytest.approx(4.0, rel=0.05)

    # the checkpoint carries the accountant: load_from_checkpoint reports the same budget
    path = tmp_path / "dp.ckpt"
    fit.save_checkpoint(path)
    loaded = DPSupervisedClassifier.load_from_checkpoint(path, weights_only=False)
    assert loaded.privacy_spent() == spent
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(loaded.eval().embed(x), module.eval().embed(x))


def test_resume_keeps_counting_privacy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = dp_module()
    first_fit = trainer(tmp_path, 1)
    first_fit.fit(first, datamodule=PoissonDataModule(ToyData(), sample_rate=first.sample_rate))
    path = tmp_path / "epoch1.ckpt"
    first_fit.save_checkpoint(path)
    assert first.privacy_spent()["steps"] == 4
    second = dp_module()
    second_fit = trainer(tmp_path, 2)
    dm = PoissonDataModule(ToyData(), sample_rate=second.sample_rate)
    second_fit.fit(second, datamodule=dm, ckpt_path=str(path))
    spent = second.privacy_spent()
    assert second_fit.current_epoch == 2 and spent["steps"] == 8
    reference = independent_epsilon(second.noise_multiplier, 0.25, 8, 1e-5)
    assert spent["epsilon"] == pytest.approx(reference, rel=1e-6)


def test_plain_loader_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wrap_datamodule"):
        trainer(tmp_path, 1).fit(dp_module(), datamodule=ToyData())


def test_more_epochs_than_calibrated_is_refused(tmp_path: Path) -> None:
    module = dp_module(epochs=2)
    dm = PoissonDataModule(ToyData(), sample_rate=module.sample_rate)
    with pytest.raises(ValueError, match="calibrated"):
        trainer(tmp_path, 3).fit(module, datamodule=dm)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"accumulate_grad_batches": 2}, "accumulate"), ({"precision": "bf16-mixed"}, "precision")],
)
def test_unsupported_trainer_settings_are_user_errors(
    tmp_path: Path, setting: dict, message: str
) -> None:
    module = dp_module()
    dm = PoissonDataModule(ToyData(), sample_rate=module.sample_rate)
    with pytest.raises(UserError, match=message):
        trainer(tmp_path, 2, **setting).fit(module, datamodule=dm)


# --- settings ------------------------------------------------------------------------------------


def test_delta_rule_and_noise_search() -> None:
    assert default_delta(1000) == 1e-5
    assert default_delta(100_000) == pytest.approx(1 / 200_000)
    noise = noise_for_epsilon(epsilon=2.0, delta=1e-5, sample_rate=0.01, steps=1000)
    assert 2.0 - 0.01 <= independent_epsilon(noise, 0.01, 1000, 1e-5) <= 2.0
    assert noise_for_epsilon(epsilon=8.0, delta=1e-5, sample_rate=0.01, steps=1000) < noise
    with pytest.raises(ValueError, match="epsilon"):
        noise_for_epsilon(epsilon=0.0, delta=1e-5, sample_rate=0.1, steps=10)
    with pytest.raises(ValueError, match="accountant"):
        dp_module(accountant="moments")
    with pytest.raises(ValueError, match="batch_size"):
        dp_module(batch_size=128)
