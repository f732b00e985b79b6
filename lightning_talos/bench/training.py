"""Training-side measurements: framework overhead, data path, precision and memory layout.

Every ratio is measured side by side, so slow phases of a shared, noisy machine fall on both
sides: Lightning and the plain loop alternate step by step, the data-path sides a few epochs
at a time.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_talos.bench.context import Bench, autocast
from lightning_talos.bench.timing import StepTimer, median, now, periods
from lightning_talos.data.datamodule import Sample, TalosDataModule
from lightning_talos.modules.common import encoder_groups, optimizer_and_schedule
from lightning_talos.modules.simclr import SimCLR
from lightning_talos.modules.window import WindowMeans, log_window

# ---------------------------------------------------------------------------- the plain loop


def plain_optim(model: SimCLR, total_steps: int) -> tuple[Any, Any]:
    """The optimiser and per-step schedule ``SimCLR.configure_optimizers`` builds (one epoch)."""
    optim = model.hparams.optim
    groups = encoder_groups(model, optim["weight_decay"])
    return optimizer_and_schedule(groups, optim, total_steps=total_steps, epochs=1)


def plain_loss(model: SimCLR, batch: Sample) -> Tensor:
    """``SimCLR.training_step`` without Lightning: the same losses, without logging."""
    losses = model.step_losses(batch)
    return losses["nce_loss"] + losses["probe_loss"]


class PlainStepper:
    """A plain PyTorch training loop, one step per :meth:`step` call.

    The same optimiser, per-step schedule, loss and precision as the Lightning module; each
    step fetches its own batch from ``loader``, moves it to the device and trains on it.
    """

    def __init__(self, bench: Bench, model: SimCLR, loader: Any, precision: str) -> None:
        self.bench, self.model, self.precision = bench, model, precision
        model.to(bench.device).train()
        self.optimizer, self.scheduler = plain_optim(model, len(loader))
        self.batches = iter(loader)

    def step(self) -> Tensor | None:
        """One training step; the detached loss, or None once the loader is exhausted."""
        batch = next(self.batches, None)
        if batch is None:
            return None
        batch = self.bench.to_device(batch)
        with autocast(self.bench.device, self.precision):
            loss = plain_loss(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()


def plain_run(
    bench: Bench,
    model: SimCLR,
    loader: Any,
    precision: str,
    budget_s: float = float("inf"),
    warmup: int | None = None,
) -> tuple[list[float], list[float]]:
    """A plain PyTorch training loop: step-start time stamps and the loss of every step.

    Stops early once ``budget_s`` seconds have passed after the warm-up and at least two
    timed steps (very slow variants, e.g. bf16 on a CPU without bf16 instructions).
    """
    warmup = bench.warmup if warmup is None else warmup
    stepper = PlainStepper(bench, model, loader, precision)
    stamps: list[float] = [now(bench.device)]
    losses: list[Tensor] = []
    while (loss := stepper.step()) is not None:
        losses.append(loss)
        stamps.append(now(bench.device))
        if len(stamps) > warmup + 2 and stamps[-1] - stamps[warmup] > budget_s:
            break
    return stamps, [float(x) for x in losses]


class Interleaved(pl.Callback):
    """Runs one plain-loop step at the start of every Lightning step and times both.

    A Lightning step is timed from the end of this callback to its next call, so it holds
    everything the Trainer does per step (hooks, the step, backward, optimiser, logging, fetching
    and moving the next batch) and none of the plain step. Alternating step by step, both sides
    see the same phases of a shared machine (measured: step times drift by 30% over seconds on
    this 2-core VM, so alternating whole runs left the ratio +-5% from run to run).
    """

    def __init__(self, plain: PlainStepper) -> None:
        self.plain = plain
        self.plain_s: list[float] = []
        self.lightning_s: list[float] = []
        self._resumed: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        device = self.plain.bench.device
        start = now(device)
        if self._resumed is not None:
            self.lightning_s.append(start - self._resumed)
        stepped = self.plain.step() is not None
        self._resumed = now(device)
        if stepped:
            self.plain_s.append(self._resumed - start)


def lightning_run(bench: Bench, model: SimCLR, loader: DataLoader, **limits: Any) -> StepTimer:
    """``Trainer.fit`` of the project's module; the callback holds the time stamps."""
    timer = StepTimer(bench.device)
    bench.trainer([timer], **limits).fit(model, train_dataloaders=loader)
    return timer


def images_per_s(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


# ---------------------------------------------------------------------------- measurements


def framework_overhead(bench: Bench) -> dict[str, Any]:
    """SimCLR step throughput in ``pl.Trainer`` vs a plain loop: same data, model, precision.

    Both read the same pre-made uint8 batches through their own DataLoader and run the batched
    augmentation in the step; both models start from the same seeded weights. The two loops
    alternate step by step (see :class:`Interleaved`); the ratio is the median over steps of
    plain step time / the adjacent Lightning step time, which cancels the machine's slow and
    fast phases (the ratio of the two median step times is recorded beside it).
    """
    # Twice the pairs of the other measurements: the ratio is read to within 1-2%.
    n = bench.warmup + 2 * bench.steps * bench.rounds + 1
    batches = bench.batches([bench.batch_size] * 4)
    plain = PlainStepper(bench, bench.simclr(), bench.loader(batches, length=n), bench.precision)
    timer = Interleaved(plain)
    bench.trainer([timer], max_steps=n).fit(
        bench.simclr(), train_dataloaders=bench.loader(batches, length=n)
    )
    lit = timer.lightning_s[bench.warmup :]
    plain_s = timer.plain_s[bench.warmup : bench.warmup + len(lit)]
    paired = [p / q for p, q in zip(plain_s, lit)]
    cost = per_step_cost(bench)
    step_s = median(plain_s)
    return {
        "ratio": median(paired),
        "ratio_of_medians": median(plain_s) / median(lit),
        "paired_ratio_quartiles": quartiles(paired),
        **cost,
        "ratio_from_overhead": step_s / (step_s + cost["overhead_ms_per_step"] / 1000),
        "lightning_images_per_s": images_per_s(bench.batch_size, median(lit)),
        "plain_images_per_s": images_per_s(bench.batch_size, median(plain_s)),
        "timed_steps": len(lit),
        "schedule": "interleaved step by step",
        "augmentation": "batched, in the step (both sides)",
    }


class _Tiny(pl.LightningModule):
    """A Linear(4, 2) with the project's per-step bookkeeping: a window of three logged scalars,
    Adam and a per-step schedule. Its step costs microseconds, so timing it exposes the
    Trainer's own per-step cost."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.window = WindowMeans()

    def loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(self.layer(batch[0]), batch[1])

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.window.add(loss=loss, probe_loss=loss, probe_acc=loss)
        log_window(self, self.window, batch_idx)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters())
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def per_step_cost(bench: Bench, steps: int = 300, warmup: int = 30) -> dict[str, float]:
    """The Trainer's own cost per step: a trivial module in ``pl.Trainer`` vs a plain loop.

    Hundreds of microsecond-steps measure the framework's fixed per-step cost far more exactly
    than the SimCLR ratio can (whose per-step noise on a shared machine is ~10%).
    """
    batch = (torch.randn(8, 4, device=bench.device), torch.zeros(8, dtype=torch.long))
    loader = DataLoader(_Repeat(batch, steps), batch_size=None)
    timer = StepTimer(bench.device)
    bench.trainer([timer], max_steps=steps).fit(_Tiny(), train_dataloaders=loader)
    lit = median(periods(timer.batch_starts, warmup))
    module = _Tiny().to(bench.device)
    optimizer = module.configure_optimizers()["optimizer"]
    stamps = []
    for x, y in loader:
        stamps.append(now(bench.device))
        loss = module.loss((x.to(bench.device), y.to(bench.device)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    plain = median(periods(stamps, warmup))
    return {
        "tiny_lightning_ms_per_step": lit * 1000,
        "tiny_plain_ms_per_step": plain * 1000,
        "overhead_ms_per_step": (lit - plain) * 1000,
    }


class _Repeat(torch.utils.data.Dataset):
    """The same item ``length`` times."""

    def __init__(self, item: Any, length: int) -> None:
        self.item, self.length = item, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        return self.item


def quartiles(values: list[float]) -> list[float]:
    """25th and 75th percentiles (the spread of the paired ratios)."""
    if len(values) < 2:
        return [median(values)] * 2
    q = statistics.quantiles(values, n=4)
    return [q[0], q[2]]


def _epoch_sizes(quarter: int, batch: int) -> list[int]:
    full, rest = divmod(quarter, batch)
    return [batch] * full + ([rest] if rest else [])


def _epoch_times(bench: Bench, model: SimCLR, loader: DataLoader, epochs: int) -> list[float]:
    """Wall times of every epoch after the first (which warms up workers and kernels)."""
    timer = lightning_run(bench, model, loader, max_epochs=epochs + 1)
    return timer.epochs[1:]


def _contrastive_data(bench: Bench, aug_mode: str) -> TalosDataModule:
    """The target role's contrastive datamodule with ``data.aug.mode=aug_mode``."""
    data = bench.with_overrides(**{"data.aug.mode": aug_mode}).data
    return TalosDataModule(data, bench.pool, bench.splits, role="target", use="two_views")


def data_path(bench: Bench, epochs: int = 2) -> dict[str, Any]:
    """A SimCLR epoch through the real datamodule vs the same steps on in-memory batches.

    With ``data.aug.mode=batched`` both sides run the augmentation inside the training step, so
    the ratio isolates the loader (sampling, collation, workers, transfer). The PIL-worker path
    (``data.aug.mode=pil``: views made per image in the loader) is reported against the same
    model-only throughput.
    """
    quarter = len(bench.splits.target_train)
    real_dm = _contrastive_data(bench, "batched")
    premade = bench.loader(bench.batches(_epoch_sizes(quarter, bench.batch_size)))
    real: list[float] = []
    model_only: list[float] = []
    for _ in range(max(1, bench.rounds - 1)):
        real += _epoch_times(bench, bench.simclr(), real_dm.train_dataloader(), epochs)
        model_only += _epoch_times(bench, bench.simclr(), premade, epochs)
    pil_dm = _contrastive_data(bench, "pil")
    pil = _epoch_times(bench, bench.simclr(augment=False), pil_dm.train_dataloader(), epochs)
    real_ips = images_per_s(quarter, median(real))
    model_ips = images_per_s(quarter, median(model_only))
    pil_ips = images_per_s(quarter, median(pil))
    return {
        "ratio": real_ips / model_ips,
        "datamodule_images_per_s": real_ips,
        "model_only_images_per_s": model_ips,
        "pil_images_per_s": pil_ips,
        "pil_vs_model": pil_ips / model_ips,
        "epoch_images": quarter,
        "timed_epochs": len(real),
        "num_workers": int(bench.cfg.data.num_workers),
    }


VARIANTS = {
    "fp32": ("32-true", False),
    "fp32_channels_last": ("32-true", True),
    "bf16": ("bf16-mixed", False),
    "bf16_channels_last": ("bf16-mixed", True),
}


def precision_layout(bench: Bench, budget_s: float = 6.0) -> dict[str, Any]:
    """Plain-loop SimCLR steps in fp32/bf16-mixed x contiguous/channels-last, one fixed batch.

    One round per variant, one warm-up step, each stopping after ``budget_s`` timed seconds
    (at least two steps: bf16 without CPU bf16 instructions is ~10x slower).
    Every variant starts from the same seeded weights and draws the same random views, so the
    losses are comparable step by step: bf16's last loss is recorded beside fp32's at the same
    step, and whether it fell from the first.
    """
    n = 1 + bench.steps + 1
    loader = bench.loader(bench.batches([bench.batch_size]), length=n)
    times: dict[str, list[float]] = {}
    losses: dict[str, list[float]] = {}
    for name, (precision, channels_last) in VARIANTS.items():
        model = bench.simclr(channels_last=channels_last)
        stamps, losses[name] = plain_run(bench, model, loader, precision, budget_s, warmup=1)
        times[name] = periods(stamps, 1)
    ips = {k: images_per_s(bench.batch_size, median(v)) for k, v in times.items()}
    bf16 = losses["bf16_channels_last"]
    fp32_same_step = losses["fp32"][min(len(bf16), len(losses["fp32"])) - 1]
    return {
        "ratio": ips["bf16_channels_last"] / ips["fp32"],
        **{f"{k}_images_per_s": v for k, v in ips.items()},
        "timed_steps": {k: len(v) for k, v in times.items()},
        "fastest": max(ips, key=lambda k: ips[k]),
        "bf16_loss_first_last": [bf16[0], bf16[-1]],
        "fp32_loss_same_steps": [losses["fp32"][0], fp32_same_step],
        "bf16_loss_decreases": bool(bf16[-1] < bf16[0]),
    }
