"""Value checks run on the composed config, before any command writes a folder.

Each failure is one ``UserError`` line naming the key (the CLI prints ``error: ...``, exit 2).
Zero or a negative count is refused, never read as "unset": a stage's ``max_epochs`` is either
null (use ``trainer.max_epochs``) or at least 1.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from lightning_talos.errors import UserError

#: Settings that count something and must be at least 1.
AT_LEAST_ONE = (
    "data.batch_size",
    "data.eval_batch_size",
    "mia.nn_batch_size",
    "aia.mlp_batch_size",
    "mia.nn_epochs",
    "aia.mlp_epochs",
    "trainer.max_epochs",
    "mia.label_only_samples",
    "mia.hsj_iterations",
    "mia.hsj_grad_samples",
    "launcher.parallel",
    "launcher.array_parallelism",
    "launcher.train.time_min",
    "launcher.train.nodes",
    "launcher.train.cpus_per_task",
    "launcher.attack.time_min",
    "launcher.attack.nodes",
    "launcher.attack.cpus_per_task",
    "dp.augmult",
)

#: Settings that are null (off, or "use the default") or at least 1.
NULL_OR_AT_LEAST_ONE = (
    "simclr.max_epochs",
    "linear.max_epochs",
    "supervised.max_epochs",
    "talos.max_epochs",
    "dp.max_epochs",
    "dp.batch_size",
    "trainer.checkpoint_every_n_steps",
)

#: Image side in pixels: below 8 the backbones have nothing left to pool; above 1024 a pool of
#: decoded images would not fit in memory.
IMAGE_SIZE = (8, 1024)

#: Four quarters (target/shadow x member/non-member), each non-empty.
MIN_POOL = 4

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_config(cfg: DictConfig) -> None:
    """Every value check, in the order a user would fix them.

    Raises:
        UserError: one line naming the first bad key.
    """
    check_interpolations(cfg)
    check_counts(cfg)
    check_claims_basis(cfg)
    check_rmia(cfg)
    check_dp(cfg)
    check_run_name(cfg.run.name)
    check_run_dir(cfg.run.dir)


def check_claims_basis(cfg: DictConfig) -> None:
    """A claim needs a declared basis: at least one attack and one probe, each named once.

    Raises:
        UserError: naming the empty or repeating ``claims.*`` key.
    """
    for key in ("membership_attacks", "attribute_probes"):
        values = [str(v) for v in cfg.claims[key]]
        if not values:
            raise UserError(f"'claims.{key}' must name at least one {key.split('_')[1][:-1]}")
        if len(set(values)) != len(values):
            raise UserError(f"'claims.{key}' names a value twice: {values}")


def check_rmia(cfg: DictConfig) -> None:
    """``mia.rmia_a`` is a number in [0, 1] or ``auto``; ``auto`` offline needs 3 references
    when RMIA runs (one attacked in turn, two to attack it with).

    Raises:
        UserError: naming ``mia.rmia_a`` or ``mia.rmia_gamma``.
    """
    a = cfg.mia.rmia_a
    if not (a == "auto" or (_is_number(a) and 0 <= a <= 1)):
        raise UserError(f"'mia.rmia_a' must be auto or a number in [0, 1], got {a}")
    if not cfg.mia.rmia_gamma > 0:
        raise UserError(f"'mia.rmia_gamma' must be > 0, got {cfg.mia.rmia_gamma}")
    offline = str(cfg.mia.reference_mode) == "offline"
    if a == "auto" and offline and "rmia" in map(str, cfg.attacks) and cfg.mia.references < 3:
        raise UserError(
            f"'mia.rmia_a=auto' tunes a on the references and needs at least 3 "
            f"(mia.references={cfg.mia.references}); set mia.rmia_a to a number in [0, 1]"
        )


def check_dp(cfg: DictConfig) -> None:
    """DP settings a count check does not cover.

    Raises:
        UserError: naming ``dp.noise_multiplier`` or ``dp.augmult_shift``.
    """
    noise = cfg.dp.noise_multiplier
    if noise is not None and noise < 0:
        raise UserError(f"'dp.noise_multiplier' must be null or >= 0, got {noise}")
    if cfg.dp.augmult_shift < 0:
        raise UserError(f"'dp.augmult_shift' must be >= 0, got {cfg.dp.augmult_shift}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_interpolations(cfg: DictConfig) -> None:
    """Resolve every ``${...}`` once.

    Raises:
        UserError: naming the key whose interpolation cannot be resolved.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as err:
        key = getattr(err, "full_key", None) or "?"
        reason = str(err).splitlines()[0]
        raise UserError(f"cannot resolve the interpolation in '{key}': {reason}") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise UserError(f"invalid value for '{key}': {str(err).splitlines()[0]}") from None


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key)


def check_counts(cfg: DictConfig) -> None:
    """Batch sizes, epochs, checkpoint intervals, pool size and image size.

    Raises:
        UserError: naming the key, its value and what is allowed.
    """
    for key in AT_LEAST_ONE:
        if _select(cfg, key) < 1:
            raise UserError(f"'{key}' must be at least 1, got {_select(cfg, key)}")
    for key in NULL_OR_AT_LEAST_ONE:
        value = _select(cfg, key)
        if value is not None and value < 1:
            raise UserError(f"'{key}' must be null or at least 1, got {value}")
    tolerance = cfg.mia.hsj_tolerance
    if tolerance is not None and not 0 < tolerance < 1:
        raise UserError(f"'mia.hsj_tolerance' must be null or in (0, 1), got {tolerance}")
    if cfg.mia.hsj_abs_tolerance <= 0:
        raise UserError(f"'mia.hsj_abs_tolerance' must be > 0, got {cfg.mia.hsj_abs_tolerance}")
    for key in ("launcher.train.gpus_per_node", "launcher.attack.gpus_per_node",
                "launcher.signal_delay_s"):  # fmt: skip
        if _select(cfg, key) < 0:
            raise UserError(f"'{key}' must be at least 0, got {_select(cfg, key)}")
    minutes = cfg.trainer.checkpoint_every_minutes
    if minutes is not None and minutes <= 0:
        raise UserError(f"'trainer.checkpoint_every_minutes' must be null or > 0, got {minutes}")
    pool = cfg.data.pool_size
    if pool is not None and pool < MIN_POOL:
        raise UserError(
            f"'data.pool_size' must be null (all) or at least {MIN_POOL} (four non-empty "
            f"quarters), got {pool}"
        )
    low, high = IMAGE_SIZE
    size = cfg.data.image_size
    if not low <= size <= high:
        raise UserError(f"'data.image_size' must be {low}..{high} pixels, got {size}")


def check_run_name(name: str) -> None:
    """``run.name`` is one plain folder name: letters, digits, ``-``, ``_``, ``.``.

    Raises:
        UserError: for separators, absolute paths, ``.``/``..`` or other characters.
    """
    if not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(
            f"'run.name' must be a plain name (letters, digits, '-', '_', '.'; not '.' or "
            f"'..'), got '{name}': it names a folder inside run.dir"
        )


def check_run_dir(run_dir: str) -> None:
    """``run.dir`` (or its nearest existing parent) is a folder this process can write in.

    A temporary file is created and removed in that folder: permission bits alone would say
    yes to root on a read-only mount.

    Raises:
        UserError: naming the folder that is not a directory or not writable.
    """
    path = Path(run_dir).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"'run.dir' {run_dir} cannot be created: {existing} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(
            f"'run.dir' {run_dir} is not writable ({existing}: {err.strerror or err})"
        ) from None
