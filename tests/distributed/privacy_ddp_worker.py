"""Two-process gloo DDP training of the test's own module with ``PrivacyAudit`` (run by
``test_privacy_ddp.py`` as ``python -m tests.distributed.privacy_ddp_worker OUT``; Lightning
starts the second rank by re-running this command)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from tests.integration.test_privacy_callback import TinyClassifier, callback, datasets


def main(out: Path) -> None:
    torch.manual_seed(0)
    members, nonmembers = datasets()
    audit = callback(members, nonmembers)
    model = TinyClassifier()
    trainer = pl.Trainer(
        max_epochs=10, accelerator="cpu", devices=2, strategy="ddp",
        logger=CSVLogger(out, name="ddp"), callbacks=[audit], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(model, DataLoader(members, batch_size=16, shuffle=True))
    rank = trainer.global_rank
    (out / f"history-rank{rank}.json").write_text(json.dumps(audit.history))
    if rank == 0:
        torch.save(model.state_dict(), out / "weights.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
