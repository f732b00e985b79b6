"""Config composition: dataclass defaults <- groups <- experiment preset <- CLI dot-list."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from lightning_talos import cli
from lightning_talos.config.load import available, compose, config_dir
from lightning_talos.config.schema import Config
from lightning_talos.errors import UserError

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "configs/experiment").glob("*.yaml")
)


def test_defaults_compose_with_required_keys() -> None:
    cfg = compose([])
    assert cfg.data.name == "synthetic"
    assert cfg.data.root is None
    assert cfg.data.image_size == 32
    assert cfg.data.pool_size is None
    assert cfg.data.task_label is None and cfg.data.sensitive_attribute is None
    assert cfg.run.dir == "runs"
    assert cfg.role == "target"
    for key in ("model.backbone", "trainer.max_epochs", "seed", "run.name", "logger.mode"):
        assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None


def test_dotlist_overrides_are_typed() -> None:
    cfg = compose(["data.image_size=64", "seed=7", "data.pool_size=100", "role=shadow"])
    assert cfg.data.image_size == 64 and isinstance(cfg.data.image_size, int)
    assert cfg.seed == 7
    assert cfg.data.pool_size == 100
    assert cfg.role == "shadow"


def test_typo_key_names_key_and_lists_valid_keys() -> None:
    with pytest.raises(UserError) as err:
        compose(["data.nmae=1"])
    message = str(err.value)
    assert "data.nmae" in message
    for valid in ("name", "root", "image_size", "pool_size"):
        assert valid in message
    assert "\n" not in message


def test_typo_top_level_key() -> None:
    with pytest.raises(UserError, match="sed") as err:
        compose(["sed=1"])
    assert "seed" in str(err.value)


def test_wrong_type_names_key() -> None:
    with pytest.raises(UserError, match=r"data\.image_size") as err:
        compose(["data.image_size=abc"])
    assert "\n" not in str(err.value)


def _choices(key: str) -> list[str]:
    """The valid values of an enum setting, from the schema's own type."""
    node = OmegaConf.structured(Config)
    parent, _, leaf = key.rpartition(".")
    section = OmegaConf.select(node, parent) if parent else node
    enum_type = OmegaConf.get_type(section, leaf)
    return [member.value for member in enum_type]


@pytest.mark.parametrize("key", ["data.name", "role", "talos.schedule", "logger.mode"])
def test_invalid_choice_names_key_and_choices(key: str) -> None:
    with pytest.raises(UserError) as err:
        compose([f"{key}=x_not_valid"])
    message = str(err.value)
    assert key in message
    for choice in _choices(key):
        assert choice in message


def test_invalid_list_item_names_key() -> None:
    with pytest.raises(UserError, match="attacks") as err:
        compose(["attacks=[nn,bogus]"])
    assert "bogus" in str(err.value)


def test_non_positive_size_refused() -> None:
    with pytest.raises(UserError, match=r"data\.batch_size"):
        compose(["data.batch_size=0"])


def test_missing_equals_refused() -> None:
    with pytest.raises(UserError, match="key=value"):
        compose(["data.name"])


def test_talos_lambda_keyword_key() -> None:
    assert compose([]).talos["lambda"] == 10.0  # the measured default (README "Talos settings")
    cfg = compose(["talos.lambda=0.5"])
    assert cfg.talos["lambda"] == 0.5
    assert "lambda_" not in cfg.talos


def test_experiment_selects_groups_and_cli_beats_preset() -> None:
    cfg = compose(["experiment=synthetic_cpu"])
    assert cfg.model.backbone == "small_cnn"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data.name == "synthetic"
    assert cfg.trainer.max_epochs == 10
    assert cfg.simclr.temperature == 0.2
    override = compose(
        ["experiment=synthetic_cpu", "trainer.max_epochs=3", "simclr.temperature=0.5"]
    )
    assert override.trainer.max_epochs == 3
    assert override.simclr.temperature == 0.5
    # argument order does not matter: the dot-list is applied last
    assert compose(["trainer.max_epochs=3", "experiment=synthetic_cpu"]).trainer.max_epochs == 3


def test_group_selection() -> None:
    cfg = compose(["model=resnet18_cifar"])
    assert cfg.model.backbone == "resnet18"
    assert cfg.model.stem == "cifar"
    data = compose(["data=cifar10"]).data
    assert data.name == "cifar10" and data.root == "data"


def test_cli_group_beats_preset_group() -> None:
    cfg = compose(["experiment=synthetic_cpu", "model=resnet18_cifar"])
    assert cfg.model.backbone == "resnet18" and cfg.model.stem == "cifar"
    assert cfg.trainer.accelerator == "cpu"  # the preset's other groups stay


@pytest.mark.parametrize(
    ("arg", "group"),
    [("experiment=nope", "experiment"), ("model=nope", "model"), ("data=x", "data")],
)
def test_unknown_group_name_lists_valid_names(arg: str, group: str) -> None:
    with pytest.raises(UserError) as err:
        compose([arg])
    message = str(err.value)
    assert group in message
    assert available(group)
    for name in available(group):
        assert name in message


def test_composed_config_is_read_only() -> None:
    cfg = compose([])
    with pytest.raises(ReadonlyConfigError):
        cfg.seed = 3
    with pytest.raises(ReadonlyConfigError):
        cfg.data.name = "cifar10"
    with pytest.raises(ReadonlyConfigError):
        cfg.talos["lambda"] = 0.1


def test_experiment_folder_is_the_one_loaded() -> None:
    assert config_dir().resolve() == (Path(__file__).parents[2] / "configs").resolve()
    assert available("experiment") == EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name: str) -> None:
    cfg = compose([f"experiment={name}"])
    assert cfg.data.name in _choices("data.name")


@pytest.mark.parametrize("group", ["data", "model", "trainer", "logger"])
def test_every_group_file_composes(group: str) -> None:
    for name in available(group):
        compose([f"{group}={name}"])


def test_cli_typo_exits_2_with_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["data", "data.nmae=1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "data.nmae" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("arg", ["data.image_size=abc", "role=x", "experiment=nope"])
def test_cli_config_errors_exit_2(arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["data", arg]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ")
    assert arg.split("=")[0] in err or "experiment" in err


def test_cli_unknown_command_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data" in err
    assert cli.main(["--help"]) == 0
    assert "data" in capsys.readouterr().out


def test_tiny_args_fixture_composes(tiny_args: list[str], tmp_path: Path) -> None:
    cfg = compose(tiny_args)
    assert cfg.data.name == "synthetic"
    assert cfg.data.synthetic.quarter_size == 64
    assert cfg.trainer.max_epochs == 1 and cfg.simclr.max_epochs == 1
    assert cfg.logger.mode == "disabled"
    assert Path(cfg.run.dir).is_relative_to(tmp_path)


def test_command_line_epochs_reach_every_stage() -> None:
    cfg = compose(["experiment=synthetic_cpu", "trainer.max_epochs=1"])
    assert cfg.trainer.max_epochs == 1
    assert [cfg[s].max_epochs for s in ("simclr", "linear", "supervised", "talos")] == [None] * 4


def test_a_stage_key_on_the_command_line_beats_trainer_epochs() -> None:
    cfg = compose(["experiment=synthetic_cpu", "trainer.max_epochs=1", "simclr.max_epochs=3"])
    assert cfg.simclr.max_epochs == 3
    assert cfg.supervised.max_epochs is None  # falls back to the command line's 1


def test_preset_stage_epochs_kept_without_command_line_epochs() -> None:
    preset = compose(["experiment=synthetic_cpu"])
    assert preset.simclr.max_epochs is not None
    assert compose(["experiment=synthetic_cpu", "seed=3"]).simclr.max_epochs == (
        preset.simclr.max_epochs
    )
