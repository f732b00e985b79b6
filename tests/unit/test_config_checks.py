"""Bad values stop every command with one `error:` line and exit 2, before any folder exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_talos.cli import main
from lightning_talos.config.load import compose
from lightning_talos.errors import UserError

CASES = [
    ("data.pool_size=-5", "data.pool_size"),
    ("data.pool_size=0", "data.pool_size"),
    ("data.pool_size=3", "four non-empty quarters"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("mia.nn_batch_size=0", "mia.nn_batch_size"),
    ("aia.mlp_batch_size=-1", "aia.mlp_batch_size"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("simclr.max_epochs=0", "simclr.max_epochs"),  # refused, not "fall back to trainer's"
    ("simclr.max_epochs=-3", "simclr.max_epochs"),
    ("linear.max_epochs=0", "linear.max_epochs"),
    ("trainer.checkpoint_every_n_steps=0", "trainer.checkpoint_every_n_steps"),
    ("trainer.checkpoint_every_minutes=0", "trainer.checkpoint_every_minutes"),
    ("data.image_size=4", "data.image_size"),
    ("data.image_size=5000", "data.image_size"),
    ("run.name=${nowhere}", "run.name"),
    ("data.root=${data.missing}", "data.root"),
    ("run.name=../escaped", "run.name"),
    ("run.name=a/b", "run.name"),
    ("run.name=/tmp/abs", "run.name"),
    ("run.name=..", "run.name"),
    ("run.name=.", "run.name"),
    ("run.name=a b", "run.name"),
]


@pytest.mark.parametrize(("arg", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_and_writes_nothing(
    arg: str, names: str, tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pretrain", *tiny_args, arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and names in err
    assert not (tmp_path / "runs").exists()


def test_plain_names_pass(tiny_args: list[str]) -> None:
    from lightning_talos.config.load import compose

    for name in ("exp-1", "a_b.c", "v2..3"):
        assert compose([*tiny_args, f"run.name={name}"]).run.name == name


@pytest.mark.parametrize("where", ["under_a_file", "unwritable"])
def test_run_dir_that_cannot_be_written(
    where: str, tiny_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # /proc takes no new files, even from root (whom permission bits would let through)
    run_dir = blocker / "runs" if where == "under_a_file" else Path("/proc/lightning_talos/runs")
    assert main(["pretrain", *tiny_args, f"run.dir={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'run.dir' {run_dir}" in err
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "override", ["mia.hsj_grad_samples=0", "mia.hsj_tolerance=1.5", "mia.hsj_abs_tolerance=0"]
)
def test_label_only_search_settings_refused(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        compose([override])
