"""Shared test hygiene and helpers.

* Every test runs with W&B disabled and silent, ``HOME`` pointing at its own ``tmp_path`` (so the
  dataset cache under ``~/.cache/lightning_talos`` never touches the user's) and the repo's
  ``configs/`` (``LIGHTNING_TALOS_CONFIGS`` unset).
* A session fixture pays torch's one-off first optimizer step (~2 s) before any test, so per-test
  timings (``--durations``) are fair.
* ``tiny_args`` gives the dot-list overrides of a tiny synthetic run for integration tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network logging, no writes to the real home, the repo's configs."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    # cli._quiet() sets WANDB_SILENT with setdefault; setting it here lets monkeypatch undo it.
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("LIGHTNING_TALOS_CONFIGS", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _warm_torch() -> None:
    """Take one Adam step on a tiny Linear: torch's first optimizer step costs ~2 s."""
    import torch

    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    layer(torch.ones(3, 4)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


#: Overrides of a tiny synthetic CPU run (no run.dir); shared by fixtures of any scope.
TINY_ARGS = [
    "experiment=synthetic_cpu",
    "data.synthetic.quarter_size=64",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "simclr.max_epochs=1",
    "linear.max_epochs=1",
    "supervised.max_epochs=1",
    "talos.max_epochs=1",
    "talos.init_from_pretrain=false",
    "mia.nn_epochs=2",
    "mia.bootstrap=20",
    "mia.label_only_samples=16",
    "aia.mlp_epochs=2",
    "aia.bootstrap=20",
    "trainer.enable_progress_bar=false",
    # fp32 everywhere: trainer=cpu picks bf16 on CPUs with native bf16, and test numbers must
    # not depend on the machine.
    "trainer.precision=32-true",
    "logger.mode=disabled",
]


@pytest.fixture
def tiny_args(tmp_path: Path) -> list[str]:
    """Dot-list overrides of a tiny synthetic CPU run writing under ``tmp_path``.

    Append more overrides (``[*tiny_args, "seed=1"]``): later ones win.
    """
    return [*TINY_ARGS, f"run.dir={tmp_path / 'runs'}"]


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Bitwise equality holds at a fixed thread count (float sums depend on it): one thread in
    this process and in every process it starts (``OMP_NUM_THREADS`` also turns off the fair
    core share, which would give a run alone more threads than one beside another)."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
