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
restore (``runs/resume.py``): a resumed run draws the batches and the noise an
uninterrupted one would have.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
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
        epsilon: Target epsilon after ``epochs`` epochs (``None`` with ``noise_multiplier``).
        delta: Target delta; ``None`` means ``min(1 / (2 n), 1e-5)``.
        max_grad_norm: Per-sample clipping norm ``C``.
        accountant: ``rdp`` (Renyi DP, the conventional one) or ``prv`` (tighter, slower).
        noise_multiplier: ``None``: the smallest noise meeting ``epsilon``; a number ``>= 0``:
            that noise, ``epsilon`` unused (``0``: clipping only, no privacy guarantee, its
            epsilon reported as infinite).
        augmult: Augmentation multiplicity ``K`` (De et al. 2022): each sampled image enters
            the step as ``K`` views (random flip and shift of up to ``augmult_shift`` pixels,
            reflect padding), and its gradient is the mean over its views *before* clipping,
            so the sensitivity stays one sample's and the privacy cost is unchanged.
        augmult_shift: Largest random shift of a view, in pixels (0: flips only).
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
        epsilon: float | None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "rdp",
        channels_last: bool = False,
        noise_multiplier: float | None = None,
        augmult: int = 1,
        augmult_shift: int = 0,
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
        if augmult < 1 or augmult_shift < 0:
            raise ValueError(
                f"need augmult >= 1, augmult_shift >= 0; got {augmult}, {augmult_shift}"
            )
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"unknown accountant {accountant!r}; valid: {', '.join(ACCOUNTANTS)}")
        self.encoder = dp_compatible(self.encoder)
        self.sample_rate = batch_size / train_size
        self.delta = default_delta(train_size) if delta is None else float(delta)
        self.planned_steps = epochs * steps_per_epoch(self.sample_rate)
        if noise_multiplier is not None:
            if noise_multiplier < 0:
                raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
            self.noise_multiplier = float(noise_multiplier)
        elif epsilon is None:
            raise ValueError("give epsilon or noise_multiplier")
        else:
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
            ``epsilon`` (the accountant's, 0 before any step; ``None`` = infinite, without
            noise), ``delta``, ``noise_multiplier``, ``max_grad_norm``, ``sample_rate``,
            ``steps`` (taken), ``planned_steps``, ``target_epsilon`` (``None``: the noise was
            set, not calibrated) and ``accountant``.
        """
        steps = sum(int(n) for _, _, n in self.accountant.history)
        epsilon: float | None = 0.0
        if steps and self.noise_multiplier == 0:
            epsilon = None  # clipping alone bounds nothing: infinite epsilon
        elif steps:
            epsilon = float(self.accountant.get_epsilon(delta=self.delta))
        target = self.hparams.epsilon
        return {
            "epsilon": epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": float(self.hparams.max_grad_norm),
            "sample_rate": self.sample_rate,
            "steps": steps,
            "planned_steps": self.planned_steps,
            "target_epsilon": None if self.hparams.noise_multiplier is not None else float(target),
            "accountant": str(self.hparams.accountant),
            "batch_size": int(self.hparams.batch_size),
            "augmult": int(self.hparams.augmult),
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
        views = int(self.hparams.augmult)
        images = batch.image
        self._empty_batch = batch.label.numel() == 0
        if self._empty_batch:
            # An empty Poisson batch is still a step: it adds noise, and the accountant counts
            # it. No forward (functorch cannot take a zero-length batch): a zero loss on the
            # parameters, and zero-length per-sample gradients in on_before_optimizer_step.
            return sum(p.sum() for p in self.parameters()) * 0.0
        if views > 1:
            images = augmented_views(images, views, int(self.hparams.augmult_shift))
        logits = self(images)
        return self._train_loss(logits, batch.label.repeat_interleave(views), batch_idx)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Average each sample's per-view gradients (rows ``i*K .. i*K+K-1``) into one row, so
        that the DP optimiser clips one gradient per sample (runs after backward, before the
        clipping in ``DPOptimizer.pre_step``)."""
        if getattr(self, "_empty_batch", False):
            for param in self.parameters():
                param.grad_sample = param.new_zeros((0, *param.shape))
            return
        views = int(self.hparams.augmult)
        if views == 1:
            return
        for param in self.parameters():
            sample = getattr(param, "grad_sample", None)
            if isinstance(sample, Tensor) and sample.shape[0] % views == 0:
                param.grad_sample = sample.view(-1, views, *sample.shape[1:]).mean(1)

    def on_train_epoch_end(self) -> None:
        epsilon = self.privacy_spent()["epsilon"]
        self.log("dp/epsilon", math.inf if epsilon is None else float(epsilon), prog_bar=True)

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


def augmented_views(images: Tensor, views: int, max_shift: int) -> Tensor:
    """``views`` random views of each image, grouped per image: ``[B, 3, H, W]`` ->
    ``[B * views, 3, H, W]`` (rows ``i * views ...`` are image ``i``'s).

    Each view is a horizontal flip with probability 1/2 (the images arrive flipped at random
    already, and a random flip of that is again a uniform flip), then a shift by up to
    ``max_shift`` pixels in each direction with reflect padding (De et al. 2022 pad and crop).
    """
    x = images.repeat_interleave(views, dim=0)
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), device=x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]  # [n, h]
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]  # [n, w]
    index = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice put their dims first: [n, h, w, 3]
    return padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
