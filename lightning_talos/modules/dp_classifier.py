"""The supervised baseline trained with DP-SGD (Abadi et al., 2016) through Opacus.

Each step clips every sample's gradient to L2 norm ``max_grad_norm``, sums, adds Gaussian
noise of standard deviation ``noise_multiplier * max_grad_norm`` and divides by the expected
batch size; batches are drawn by Poisson sampling at rate ``q = batch_size / train_size``
(:class:`~lightning_talos.defences.dp.PoissonDataModule`). The noise multiplier is the smallest
that keeps ``epochs`` epochs within the target ``(epsilon, delta)``; the accountant records the
steps actually taken and :meth:`DPSupervisedClassifier.privacy_spent` reports what they cost.

Integration with Lightning, in the spirit of Opacus' Lightning example but without wrapping the
LightningModule itself: Opacus' hooks attach to ``encoder`` and ``head`` in place
(``wrap_model=False``), so parameter names, ``embed``/``head``/``forward`` and
``load_from_checkpoint`` are those of :class:`SupervisedClassifier`; the optimiser Lightning
steps is Opacus' ``DPOptimizer`` around the configured one.

The backbone is the GroupNorm variant (:mod:`lightning_talos.models.norm`): BatchNorm mixes
samples, which per-sample clipping cannot bound (activations also run out of place there).
Single device only (Opacus' distributed wrapper is not wired into Lightning's DDP here), no
gradient accumulation, 32-bit precision.

Checkpoints: Lightning saves weights, optimiser state, LR schedule and loop counters; this
module adds ``checkpoint["dp"]`` with the accountant's history (noise, rate, steps) and the
noise multiplier used, so a resumed run keeps counting the privacy it already spent. Poisson
sampling draws each epoch's masks from the run's seed and the epoch (``defences/poisson.py``)
and the noise comes from torch's global generator, which the stage runner's checkpoints
restore (``pipeline/resume.py``): a resumed run draws the batches and the noise an
uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from opacus.accountants import create_accountant
from opacus.grad_sample import GradSampleHooks
from opacus.optimizers import DPOptimizer
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import Tensor, nn

from lightning_talos.defences.dp import (
    ACCOUNTANTS,
    PoissonDataModule,
    default_delta,
    noise_for_epsilon,
    steps_per_epoch,
)
from lightning_talos.errors import UserError
from lightning_talos.models.norm import dp_compatible
from lightning_talos.modules.classifier import SupervisedClassifier
from lightning_talos.modules.common import decay_groups
from lightning_talos.optim import build_optimizer, build_scheduler


class DPSupervisedClassifier(SupervisedClassifier):
    """GroupNorm backbone + Linear(d, classes), trained end to end with DP-SGD.

    Args:
        backbone: Backbone name (see ``build_backbone``); its BatchNorms become GroupNorms.
        stem: ``imagenet`` or ``cifar``.
        num_classes: Task classes.
        optim: Optimiser settings as for :class:`SupervisedClassifier` (``name``, ``lr``,
            ``weight_decay``, ``momentum``, ``schedule``, ``warmup_epochs``).
        train_size: Training samples ``n`` (the role's train quarter).
        batch_size: Expected batch size; the sampling rate is ``batch_size / train_size``.
        epochs: Epochs the noise is calibrated for.
        epsilon: Target epsilon after ``epochs`` epochs.
        delta: Target delta; ``None`` means ``min(1 / (2 n), 1e-5)``.
        max_grad_norm: Per-sample clipping norm ``C``.
        accountant: ``rdp`` (Renyi DP, the conventional one) or ``prv`` (tighter, slower).
        channels_last: Accepted so the call matches :class:`SupervisedClassifier`, and
            ignored: Opacus' per-sample convolution gradients are wrong in channels-last
            layout, so this module always runs contiguous (recorded as False).

    Raises:
        ValueError: If a privacy setting is out of range or the budget is unreachable.
    """

    def __init__(
        self,
        *,
        backbone: str,
        stem: str,
        num_classes: int,
        optim: dict[str, Any],
        train_size: int,
        batch_size: int,
        epochs: int,
        epsilon: float,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "rdp",
        channels_last: bool = False,
    ) -> None:
        super().__init__(
            backbone=backbone,
            stem=stem,
            num_classes=num_classes,
            optim=optim,
            channels_last=False,
        )
        self.save_hyperparameters()
        # Opacus' convolution per-sample gradients come out wrong in channels-last layout
        # (max error 0.6 against one-sample-at-a-time gradients, 3e-7 contiguous, measured on
        # small_cnn), which would make the clipping bound the wrong thing: always contiguous.
        self.hparams["channels_last"] = False
        if not 1 <= batch_size <= train_size:
            raise ValueError(f"need 1 <= batch_size <= train_size, got {batch_size}, {train_size}")
        if epochs < 1 or max_grad_norm <= 0:
            raise ValueError(f"need epochs >= 1, max_grad_norm > 0; got {epochs}, {max_grad_norm}")
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"unknown accountant {accountant!r}; valid: {', '.join(ACCOUNTANTS)}")
        self.encoder = dp_compatible(self.encoder)
        self.sample_rate = batch_size / train_size
        self.delta = default_delta(train_size) if delta is None else float(delta)
        self.planned_steps = epochs * steps_per_epoch(self.sample_rate)
        self.noise_multiplier = noise_for_epsilon(
            epsilon=epsilon,
            delta=self.delta,
            sample_rate=self.sample_rate,
            steps=self.planned_steps,
            accountant=accountant,
        )
        self.accountant = create_accountant(mechanism=accountant)
        self._hooks: GradSampleHooks | None = None

    # --- privacy -------------------------------------------------------------------------------

    def privacy_spent(self) -> dict[str, float | int | str]:
        """What the steps taken so far cost, and the settings that made them.

        Returns:
            ``epsilon`` (the accountant's, 0 before any step), ``delta``, ``noise_multiplier``,
            ``max_grad_norm``, ``sample_rate``, ``steps`` (taken), ``planned_steps``,
            ``target_epsilon`` and ``accountant``.
        """
        steps = sum(int(n) for _, _, n in self.accountant.history)
        epsilon = float(self.accountant.get_epsilon(delta=self.delta)) if steps else 0.0
        return {
            "epsilon": epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": float(self.hparams.max_grad_norm),
            "sample_rate": self.sample_rate,
            "steps": steps,
            "planned_steps": self.planned_steps,
            "target_epsilon": float(self.hparams.epsilon),
            "accountant": str(self.hparams.accountant),
        }

    def dp_optimizer(self) -> DPOptimizer:
        """The configured optimiser wrapped for DP-SGD, per-sample hooks attached, the
        accountant counting every noisy step (re-attaches cleanly when called again)."""
        optim = self.hparams.optim
        groups = decay_groups(self.encoder, optim["weight_decay"])
        groups += decay_groups(self.head, optim["weight_decay"])
        base = build_optimizer(
            groups,
            name=optim["name"],
            lr=optim["lr"],
            weight_decay=optim["weight_decay"],
            momentum=optim.get("momentum", 0.9),
        )
        self.remove_dp_hooks()
        # A throwaway container: hooks go on encoder and head themselves, names unchanged.
        self._hooks = GradSampleHooks(
            nn.ModuleList([self.encoder, self.head]), batch_first=True, loss_reduction="mean"
        )
        self._hooks.forbid_grad_accumulation()  # Poisson batches must not be accumulated
        optimizer = DPOptimizer(
            base,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=float(self.hparams.max_grad_norm),
            expected_batch_size=int(self.hparams.batch_size),
            loss_reduction="mean",
        )
        optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(self.sample_rate))
        return optimizer

    def wrap_datamodule(self, datamodule: pl.LightningDataModule) -> PoissonDataModule:
        """``datamodule`` with Poisson training batches at this module's ``sample_rate`` (the
        only training loader :meth:`on_train_start` accepts), seeded by the datamodule's
        ``seed`` when it has one (resumable)."""
        return PoissonDataModule(
            datamodule, sample_rate=self.sample_rate, seed=getattr(datamodule, "seed", None)
        )

    def remove_dp_hooks(self) -> None:
        """Detach Opacus' hooks and per-sample state (e.g. before exporting the model)."""
        if self._hooks is not None:
            self._hooks.cleanup()
            self._hooks = None

    # --- Lightning -----------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        self._check_trainer()
        optimizer = self.dp_optimizer()
        optim = self.hparams.optim
        epochs = int(self.hparams.epochs)
        warmup = int(self.planned_steps * optim.get("warmup_epochs", 0.0) / epochs)
        scheduler = build_scheduler(
            optimizer,
            schedule=optim["schedule"],
            total_steps=self.planned_steps,
            warmup_steps=min(warmup, self.planned_steps),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def _check_trainer(self) -> None:
        trainer = self.trainer
        if trainer.world_size > 1:
            raise UserError("dp_supervised trains on one device (trainer.devices=1)")
        if str(trainer.precision) not in ("32-true", "32", "64-true", "64"):
            # Per-sample norms computed in 16-bit can exceed the clipping bound slightly.
            raise UserError(
                f"dp_supervised needs full precision (trainer.precision=32-true), "
                f"got {trainer.precision}"
            )
        if trainer.accumulate_grad_batches != 1:
            raise UserError("dp_supervised cannot accumulate gradients over Poisson batches")
        if trainer.max_epochs is not None and trainer.max_epochs > self.hparams.epochs:
            raise ValueError(
                f"trainer.max_epochs={trainer.max_epochs} exceeds the {self.hparams.epochs} "
                "epochs the noise was calibrated for (epsilon would overshoot its target)"
            )

    def on_train_start(self) -> None:
        """Refuse a training loader that is not Poisson sampling at this module's rate: the
        accounting would not hold."""
        sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        ok = (
            isinstance(sampler, UniformWithReplacementSampler)
            and abs(sampler.sample_rate - self.sample_rate) < 1e-12
            and sampler.num_samples == self.hparams.train_size
        )
        if not ok:
            raise ValueError(
                "DP-SGD needs Poisson batches at the accounted rate: train on "
                f"module.wrap_datamodule(dm) (sample rate {self.sample_rate} over "
                f"{self.hparams.train_size} samples)"
            )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        logits = self(batch.image)
        if batch.label.numel() == 0:
            # An empty Poisson batch is still a step: it adds noise, and the accountant counts
            # it. A zero loss keeps the graph so the hooks see a zero-length batch.
            return logits.sum() * 0.0
        return self._train_loss(logits, batch.label, batch_idx)

    def on_train_epoch_end(self) -> None:
        spent = self.privacy_spent()
        self.log("dp/epsilon", float(spent["epsilon"]), prog_bar=True)

    def on_fit_end(self) -> None:
        self.remove_dp_hooks()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dp"] = {
            "accountant": self.accountant.state_dict(),
            "noise_multiplier": self.noise_multiplier,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("dp")
        if state is None:
            return
        self.accountant.load_state_dict(state["accountant"])
        self.noise_multiplier = float(state["noise_multiplier"])
