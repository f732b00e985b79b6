"""Feature extraction once per model: eval mode, no augmentation, cached beside the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_talos.attacks.outputs import ModelOutputs, SplitOutputs
from lightning_talos.data.datamodule import TalosDataModule
from lightning_talos.data.splits import QUARTERS
from lightning_talos.precision import AutocastEval
from lightning_talos.runs.context import RunContext
from lightning_talos.safe_load import checkpoint_error, file_digest, load_arrays, save_arrays


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class ModelSource:
    """The attacked model of one method: a finished classifier stage, per role.

    Args:
        ctx: the run.
        method: the method's name (as in ``results.json``).
        stage: the classifier stage's name (its folders are ``<stage>-<role>``).
        load: loads the classifier from a checkpoint path.
        rebuild: the command that trains the stage for a role (``{role}`` is filled in).
    """

    ctx: RunContext
    method: str
    stage: str
    load: Callable[[Path], torch.nn.Module]
    rebuild: str

    def folder(self, role: str) -> Path:
        return self.ctx.stage_dir(self.stage, role)

    def manifest(self, role: str) -> dict[str, Any]:
        """The stage's finished manifest.

        Raises:
            UserError: when it has not finished, naming the command that trains it.
        """
        folder = self.ctx.folder(self.stage, role)
        return folder.require_done(self.rebuild.format(role=role))

    def classifier(self, role: str) -> torch.nn.Module:
        """The trained classifier of ``role`` in eval mode, queried at its training precision
        (:class:`~lightning_talos.precision.AutocastEval`).

        Raises:
            UserError: when the stage has not finished or its checkpoint is unreadable.
        """
        self.manifest(role)
        path = self.folder(role) / "checkpoints" / "last.ckpt"
        try:
            model = self.load(path)
        except Exception as err:  # truncated, foreign or hostile (nothing in it is run): one line
            raise checkpoint_error(path, err) from None
        return AutocastEval(model.to(device()).eval(), self.precision(role))

    def precision(self, role: str) -> str:
        """The precision the model was trained and validated in, which the attacks query it
        in (manifests written before it was recorded: 32-true)."""
        return str(self.manifest(role).get("precision") or "32-true")

    def quarters(self, role: str) -> dict[str, SplitOutputs]:
        """The model's outputs on all four quarters, from ``<run>/features/`` when cached.

        The cache is keyed by the model's completion id (a retrained model gets a new one), the
        split hash and the checkpoint's bytes (a replaced checkpoint is noticed); a stale or
        unreadable cache is recomputed. It is a NumPy archive, so reading it runs no code.
        """
        ctx = self.ctx
        path = ctx.root / "features" / f"{self.stage}-{role}.npz"
        checkpoint = self.folder(role) / "checkpoints" / "last.ckpt"
        key = {
            "completion_id": self.manifest(role)["completion_id"],
            "split_hash": ctx.splits.hash,
            "checkpoint_sha256": file_digest(checkpoint) if checkpoint.is_file() else "",
            "precision": self.precision(role),
        }
        cached = _read_cache(path)
        if cached is not None and cached["key"] == key:
            return {q: SplitOutputs(**v) for q, v in cached["quarters"].items()}
        model = self.classifier(role)
        dm = TalosDataModule(ctx.cfg.data, ctx.pool, ctx.splits, role=role, use="eval")
        quarters = {q: extract(model, dm.eval_loader(getattr(ctx.splits, q))) for q in QUARTERS}
        _write_cache(path, key, quarters)
        return quarters

    def outputs(self, role: str) -> ModelOutputs:
        """Members (the role's train quarter) and non-members (its test quarter)."""
        quarters = self.quarters(role)
        return ModelOutputs(members=quarters[f"{role}_train"], nonmembers=quarters[f"{role}_test"])


@torch.no_grad()
def extract(model: torch.nn.Module, loader: Any) -> SplitOutputs:
    """Logits and embeddings of every sample of ``loader`` (deterministic, no grad)."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("index", "logits", "emb", "label", "attr")}
    for batch in loader:
        h = model.embed(batch.image.to(device()))
        parts["emb"].append(h.float().cpu())
        parts["logits"].append(model.head(h).float().cpu())
        parts["index"].append(torch.as_tensor(batch.index))
        parts["label"].append(torch.as_tensor(batch.label))
        parts["attr"].append(torch.as_tensor(batch.attribute))
    cat = {k: torch.cat(v) for k, v in parts.items()}
    attributes = cat["attr"] if bool((cat["attr"] >= 0).all()) else None
    return SplitOutputs(cat["index"], cat["logits"], cat["label"], cat["emb"], attributes)


def _read_cache(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        arrays, key = load_arrays(path)
        quarters: dict[str, dict[str, Tensor | None]] = {}
        for name, array in arrays.items():
            quarter, field = name.split("/")
            quarters.setdefault(quarter, {"attributes": None})[field] = torch.from_numpy(array)
        return {"key": key, "quarters": quarters}
    except Exception:  # a truncated or foreign cache is recomputed, never trusted
        return None


def _write_cache(path: Path, key: dict[str, str], quarters: dict[str, SplitOutputs]) -> None:
    arrays = {
        f"{quarter}/{field}": value
        for quarter, outputs in quarters.items()
        for field, value in vars(outputs).items()
        if value is not None
    }
    save_arrays(path, arrays, key)
