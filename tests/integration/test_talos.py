"""Talos: reversed gradients reach only the encoder; each schedule steps what it should."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.data.datamodule import TalosDataModule
from lightning_talos.models.grl import grad_reverse
from lightning_talos.models.heads import AdversaryHead
from lightning_talos.modules.talos import Talos, dann_lambda
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.registry import train_stage


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def test_adversary_gradients_are_not_reversed() -> None:
    torch.manual_seed(0)
    adversary = AdversaryHead(8, 3)
    r = torch.randn(16, 8, requires_grad=True)
    y = torch.randint(0, 3, (16,))
    F.cross_entropy(adversary(grad_reverse(r, 0.7)), y).backward()
    reversed_r = r.grad.clone()
    reversed_w = [p.grad.clone() for p in adversary.parameters()]
    r.grad = None
    adversary.zero_grad()
    F.cross_entropy(adversary(r), y).backward()
    assert torch.allclose(reversed_r, -0.7 * r.grad)
    for got, plain in zip(reversed_w, (p.grad for p in adversary.parameters())):
        assert torch.equal(got, plain)  # the adversary itself still minimises its loss


def test_dann_ramp() -> None:
    assert dann_lambda(2.0, 0.0) == 0.0
    assert abs(dann_lambda(2.0, 1.0) - 2.0 * (2 / (1 + torch.e**-10) - 1)) < 1e-9
    assert dann_lambda(1.0, 0.2) < dann_lambda(1.0, 0.5) < 1.0


class _PhaseCheck(pl.Callback):
    """Record which parts changed in each Lightning epoch."""

    def __init__(self) -> None:
        self.changed: list[tuple[bool, bool]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: Talos) -> None:
        self.encoder = _params(module.backbone)
        self.adversary = _params(module.adversary)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: Talos) -> None:
        self.changed.append(
            (_changed(self.encoder, module.backbone), _changed(self.adversary, module.adversary))
        )


def _fit(tiny_args: list[str], *extra: str, epochs: int) -> list[tuple[bool, bool]]:
    ctx = RunContext(compose([*tiny_args, *extra]))
    module = train_stage("talos").build(ctx, "target", {})
    dm = TalosDataModule(ctx.cfg.data, ctx.pool, ctx.splits, role="target", use="two_views")
    check = _PhaseCheck()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[check],
        limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return check.changed


def test_alternating_steps_one_part_per_pass(tiny_args: list[str]) -> None:
    changed = _fit(tiny_args, "talos.schedule=alternating", epochs=2)
    assert changed == [(True, False), (False, True)]  # encoder pass, then adversary pass


def test_simultaneous_steps_both(tiny_args: list[str]) -> None:
    assert _fit(tiny_args, "talos.schedule=simultaneous", epochs=1) == [(True, True)]


def test_talos_cli_and_linear_on_talos_encoder(tiny_args: list[str], tmp_path: Path) -> None:
    args = [*tiny_args, "talos.location=projection", "talos.views=original"]
    assert main(["talos", *args]) == 0
    assert main(["linear", "method=talos", *args]) == 0
    folder = tmp_path / "runs" / "default"
    assert (folder / "talos_linear-target" / "metrics.json").is_file()
    assert "val/adv_member_acc" in (folder / "talos-target" / "metrics.json").read_text()


def test_talos_needs_an_attribute(tiny_args: list[str], capsys) -> None:  # noqa: ANN001
    pool_without = [*tiny_args, "data.name=cifar10", "data.root=/nonexistent"]
    assert main(["talos", *pool_without]) == 2
    assert "error:" in capsys.readouterr().err
