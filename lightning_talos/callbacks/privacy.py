"""``PrivacyAudit``: membership (and attribute) leakage of a LightningModule while it trains.

Every ``every_n_epochs`` training epochs the callback puts the module in eval mode, computes
its outputs on the user's members and non-members under ``torch.no_grad()``, restores every
submodule's train/eval mode, and measures the threshold-free posterior attacks (Song & Mittal's
metric scores and the loss; AUC, TPR at 1% / 0.1% FPR, advantage), the generalisation gap
(member minus non-member accuracy) and, with ``embed_fn`` and data yielding a sensitive
attribute, an attribute probe fitted on the members' embeddings and scored on the
non-members'. Threshold-free because a threshold calibrated on the audited members themselves
would flatter the attack.

Under DDP each rank computes every ``world_size``-th batch and rank 0 combines the shards in
batch order, so the numbers equal a one-process run; every rank then holds the same
``history``. Loaders must be deterministic (no shuffling) for that to hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightning_talos.attacks.attribute import PROBES, run_probes
from lightning_talos.attacks.membership import metric_scores
from lightning_talos.attacks.metrics import membership_metrics

ATTACKS: tuple[str, ...] = ("loss", "confidence", "entropy", "modified_entropy")
#: Threshold-free summaries of each attack kept per audited epoch.
SUMMARY: tuple[str, ...] = ("auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr", "advantage")
HISTORY_FILE = "privacy_history.json"
_EPS = 1e-30

LogitsFn = Callable[[nn.Module, Tensor], Tensor]


def _default_logits(module: nn.Module, x: Tensor) -> Tensor:
    return module(x)


def _loader(data: Dataset | DataLoader | Iterable, batch_size: int) -> Iterable:
    """A dataset in a plain (ordered) loader; a loader or any re-iterable of batches as is."""
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        return DataLoader(data, batch_size=batch_size)
    return data


def _dist() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class PrivacyAudit(pl.Callback):
    """Membership inference on the model being trained, every few epochs.

    Args:
        members: Training samples of the model: a dataset or a (non-shuffling) dataloader, or
            any re-iterable of batches, yielding ``(x, y)`` or ``(x, y, a)`` with ``a`` a
            sensitive attribute.
        nonmembers: Held-out samples, the same way.
        every_n_epochs: Audit after every this many training epochs.
        logits_fn: ``logits_fn(module, x) -> [B, C]`` logits; default ``module(x)``.
        attacks: Subset of :data:`ATTACKS` (higher score = member: the negative loss, the true
            class's probability, the negative entropy and modified entropy).
        embed_fn: ``embed_fn(module, x) -> [B, d]`` embeddings for the attribute probe.
        attribute: The attribute probe, one of ``mlp``, ``logistic``, ``knn`` (None: logistic);
            it runs when ``embed_fn`` is given and the data yield ``(x, y, a)``.
        batch_size: Batch size when ``members`` / ``nonmembers`` are datasets.
        history_file: Where to write the history (default ``<trainer.log_dir>/``
            ``privacy_history.json`` when the trainer has a logger; otherwise only
            ``history`` keeps it).

    Attributes:
        history: One dict per audited epoch: ``epoch``, ``"<attack>/<summary>"`` for each attack
            and :data:`SUMMARY` key, ``train_acc``, ``test_acc``, ``generalization_gap`` and,
            with the probe, ``attribute/acc`` and ``attribute/majority_baseline``.

    Raises:
        ValueError: For ``every_n_epochs < 1``, an unknown attack or probe name.
    """

    def __init__(
        self,
        members: Dataset | DataLoader,
        nonmembers: Dataset | DataLoader,
        *,
        every_n_epochs: int = 1,
        logits_fn: LogitsFn | None = None,
        attacks: Sequence[str] = ATTACKS,
        embed_fn: LogitsFn | None = None,
        attribute: str | None = None,
        batch_size: int = 256,
        history_file: str | Path | None = None,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        unknown = [a for a in attacks if a not in ATTACKS]
        if unknown or not attacks:
            raise ValueError(f"attacks must be a non-empty subset of {ATTACKS}, got {attacks}")
        if attribute is not None and attribute not in PROBES:
            raise ValueError(f"attribute must be one of {PROBES} or None, got {attribute!r}")
        self.members = _loader(members, batch_size)
        self.nonmembers = _loader(nonmembers, batch_size)
        self.every_n_epochs = every_n_epochs
        self.logits_fn = logits_fn or _default_logits
        self.attacks = tuple(attacks)
        self.embed_fn = embed_fn
        self.probe = attribute or "logistic"
        self.history_file = None if history_file is None else Path(history_file)
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or trainer.sanity_checking:
            return
        row = self.audit(pl_module)
        row = {"epoch": int(trainer.current_epoch), **row}
        self.history.append(row)
        path = self.history_file
        if path is None and trainer.loggers:  # without a logger there is no log dir to use
            log_dir = trainer.log_dir  # a broadcast under DDP: every rank must ask for it
            path = Path(log_dir) / HISTORY_FILE if log_dir is not None else None
        if trainer.is_global_zero:
            self._log(trainer, row)
            if path is not None:
                _save(path, self.history)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    # ------------------------------------------------------------------ the audit
    def audit(self, module: nn.Module) -> dict[str, float]:
        """One audit of ``module`` now (eval mode, no grad; the modes are restored after).

        Returns:
            The history row without ``epoch`` (the same on every rank).
        """
        modes = {m: m.training for m in module.modules()}
        module.eval()
        try:
            with torch.no_grad():
                members = self._outputs(module, self.members)
                nonmembers = self._outputs(module, self.nonmembers)
        finally:
            for m, mode in modes.items():
                m.train(mode)
        return self._combined(members, nonmembers)

    def _outputs(self, module: nn.Module, loader: Iterable) -> list[tuple[int, dict]]:
        """This rank's shard: ``(batch index, per-sample arrays)`` for every ``world``-th batch."""
        rank, world = _dist()
        device = next(iter(module.parameters()), torch.zeros(())).device
        out = []
        for b, batch in enumerate(loader):
            if b % world != rank:
                continue
            x, y = batch[0].to(device), batch[1]
            logits = self.logits_fn(module, x).double().cpu()
            part = {"logits": logits.numpy(), "y": np.asarray(y.cpu(), dtype=np.int64)}
            if self.embed_fn is not None and len(batch) > 2:
                part["h"] = self.embed_fn(module, x).double().cpu().numpy()
                part["a"] = np.asarray(batch[2].cpu(), dtype=np.int64)
            out.append((b, part))
        return out

    def _combined(self, members: list, nonmembers: list) -> dict[str, float]:
        """Gather the shards on rank 0 (batch order), measure there, share the row."""
        rank, world = _dist()
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, (members, nonmembers))
            members = [p for g in gathered for p in g[0]]
            nonmembers = [p for g in gathered for p in g[1]]
        row = self._measure(_stack(members), _stack(nonmembers)) if rank == 0 else None
        if world > 1:
            box = [row]
            dist.broadcast_object_list(box, src=0)
            row = box[0]
        return row

    def _measure(self, members: dict, nonmembers: dict) -> dict[str, float]:
        scores = {k: np.r_[members[k], nonmembers[k]] for k in ("logits", "y")}
        is_member = np.r_[np.ones(len(members["y"]), bool), np.zeros(len(nonmembers["y"]), bool)]
        per_sample = _scores(scores["logits"], scores["y"])
        row: dict[str, float] = {}
        for attack in self.attacks:
            found = membership_metrics(
                per_sample[attack], is_member, np.zeros(len(is_member), bool), n_bootstrap=0
            )
            row.update({f"{attack}/{k}": float(found[k]) for k in SUMMARY})
        train = float(np.mean(members["logits"].argmax(1) == members["y"]))
        test = float(np.mean(nonmembers["logits"].argmax(1) == nonmembers["y"]))
        row.update({"train_acc": train, "test_acc": test, "generalization_gap": train - test})
        if "h" in members and "h" in nonmembers:
            probe = run_probes(
                members["h"], members["a"], nonmembers["h"], nonmembers["a"],
                int(max(members["a"].max(), nonmembers["a"].max())) + 1,
                probes=(self.probe,), n_bootstrap=0,
            )[self.probe]  # fmt: skip
            row["attribute/acc"] = probe["acc"]
            row["attribute/majority_baseline"] = probe["majority_baseline"]
        return row

    # ------------------------------------------------------------------ outputs
    def _log(self, trainer: pl.Trainer, row: dict[str, float]) -> None:
        metrics = {f"privacy/{k}": v for k, v in row.items() if k != "epoch"}
        metrics["epoch"] = row["epoch"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


def _save(path: Path, history: list[dict[str, float]]) -> None:
    """Write the history atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(history, indent=1))
    tmp.replace(path)


def _stack(parts: list[tuple[int, dict]]) -> dict[str, np.ndarray]:
    """Concatenate shards in batch order (the order of a one-process pass)."""
    ordered = [p for _, p in sorted(parts, key=lambda item: item[0])]
    return {k: np.concatenate([p[k] for p in ordered]) for k in ordered[0]} if ordered else {}


def _scores(logits: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample membership scores (higher = member) from logits ``[N, C]``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    out = metric_scores(np.exp(log_p), y, eps=_EPS)
    out["loss"] = log_p[np.arange(len(y)), y]  # the negative cross-entropy
    return out
