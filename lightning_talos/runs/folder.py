"""A stage's folder ``<run>/<stage>-<key>``, read once: is it done, resumable, stale, and are the
stages it reads good? One :class:`StageFolder` answers all of it for the runners, the provenance
checks and the audit plan; its manifest is read from disk once per command.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightning_talos.errors import UserError
from lightning_talos.runs.records import LAST, write_json
from lightning_talos.runs.settings import config_diff


@dataclass(frozen=True)
class Expected:
    """What the current command expects of a stage: the settings it gives that stage.

    Args:
        config: the part of the config the stage's result depends on (:func:`stage_config`).
        epochs: the epochs it asks for (None for an attack stage).
        rebuild: the command that makes the stage, named when it is missing.
    """

    config: dict[str, Any]
    epochs: int | None
    rebuild: str

    @property
    def retrain(self) -> str:
        """The command that makes the stage again from scratch, named when it is unusable."""
        return f"{self.rebuild} run.resume=never (plus this command's other settings)"


@dataclass(frozen=True)
class Read:
    """A stage another one reads: its folder, what this command expects of it, and whether its
    completion id is an input of the reader (a direct upstream) or only its settings are checked
    (an upstream of an upstream)."""

    folder: StageFolder
    expected: Expected
    is_input: bool = True


@dataclass(frozen=True)
class Decision:
    """What a runner does with a stage: ``fresh``, ``resume`` or ``done``.

    Args:
        action: the decision.
        inputs: completion ids of the stages it reads, keyed by folder (plus extra inputs).
        manifest: the stage's manifest as found (None when it has none).
        start: for ``resume``, the checkpoint to resume from and its progress.
    """

    action: str
    inputs: dict[str, str]
    manifest: dict[str, Any] | None = None
    start: tuple[Path, Any] | None = None


@dataclass
class Record:
    """What a runner fills in while a stage runs; :meth:`StageFolder.record` writes it.

    ``manifest`` is the stage's manifest (written as ``running`` when recording starts, again
    when it ends); ``outputs`` maps file names in the folder to JSON payloads written at the end,
    before the final manifest.
    """

    manifest: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


class StageFolder:
    """One stage's folder ``<run>/<stage>-<key>`` (key: a role, or the attacked method).

    The manifest is read on first use and then kept: the owner (the run's
    :class:`~lightning_talos.runs.context.RunContext`) hands out one object per folder, so a
    command reads each manifest once, and what it writes through :meth:`recording` is what later
    questions see. A runner enters it twice per stage: :meth:`decide`, then :meth:`record`.

    Args:
        path: the folder.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._manifest: dict[str, Any] | None = None
        self._read = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The stage's manifest, or None when it has none.

        Raises:
            UserError: when the manifest exists but is not valid JSON.
        """
        if not self._read:
            self._manifest = _read_manifest(self.path)
            self._read = True
        return self._manifest

    @property
    def done(self) -> bool:
        return (self.manifest or {}).get("status") == "done"

    @property
    def checkpoint(self) -> Path:
        return self.path / LAST

    def require_done(self, rebuild: str) -> dict[str, Any]:
        """The manifest of a finished stage.

        Raises:
            UserError: when it is missing or unfinished, naming the command ``rebuild``.
        """
        if not self.done:
            raise UserError(
                f"{self.name} is missing or unfinished in {self.path.parent}; "
                f"make it first: {rebuild} (with the same settings)"
            )
        return self.manifest  # type: ignore[return-value]

    def stale_keys(self, config: dict[str, Any]) -> list[str]:
        """Dotted keys whose recorded settings differ from ``config`` (none without a manifest)."""
        return config_diff((self.manifest or {}).get("config", {}), config)

    def check_reusable(self, config: dict[str, Any], split_hash: str) -> None:
        """Refuse to touch a stage made with other settings or on other splits.

        Raises:
            UserError: naming the keys that differ, or saying the splits differ.
        """
        diff = self.stale_keys(config)
        if diff:
            raise UserError(
                f"{self.path} was made with other settings (differs in: {', '.join(diff)}); "
                "use a new run.name, or run.resume=never to replace it"
            )
        if (self.manifest or {}).get("split_hash") != split_hash:
            raise UserError(f"{self.path} was trained on other splits; use a new run.name")

    def check_made_with(self, expected: Expected) -> None:
        """Refuse a stage another one reads when it was made with other settings, has fewer
        epochs than asked for, or has an unreadable checkpoint (a stage without a manifest is
        left to :meth:`require_done`, which names the command).

        Raises:
            UserError: naming the differing keys (and the command to retrain it), or the corrupt
                checkpoint and the command that rebuilds it.
        """
        if self.manifest is None:
            return
        rebuild = expected.retrain
        diff = self.stale_keys(expected.config)
        if diff:
            raise UserError(
                f"upstream {self.path} was made with other settings (differs in: "
                f"{', '.join(diff)}); use the settings it was made with, a new run.name, or "
                f"retrain it with these: {rebuild}"
            )
        done = self.manifest.get("epochs_completed", 0)
        if self.done and expected.epochs is not None and done < expected.epochs:
            raise UserError(
                f"upstream {self.path} has {done} of the {expected.epochs} epochs these settings "
                "ask for; continue it first with the same command and settings"
            )
        if self.checkpoint.is_file():
            from lightning_talos.runs.checkpoints import read_progress  # torch: only when needed

            read_progress(self.checkpoint, rebuild=rebuild)

    def decide(
        self,
        expected: Expected,
        *,
        reads: Sequence[Read] = (),
        extra_inputs: dict[str, str] | None = None,
        split_hash: str,
        resume: str,
        output: str | None = None,
    ) -> Decision:
        """Whether to train (or attack) ``fresh``, ``resume`` or skip as ``done``.

        The stages it reads must be finished (their completion ids are its inputs) and made with
        the settings this command gives them. A stage is ``done`` when it finished with the same
        config, splits and inputs (and, for a training stage, at least ``expected.epochs``
        epochs; for an attack stage, with its ``output`` file present); an unfinished training
        stage resumes from its newest checkpoint; anything else is ``fresh``, and so is
        everything with ``resume=never``.

        Raises:
            UserError: when a stage it reads is unfinished or made otherwise, when this stage was
                made with other settings or other splits, or when its checkpoint is unreadable.
        """
        inputs = {r.folder.name: r.folder.require_done(r.expected.rebuild)["completion_id"]
                  for r in reads if r.is_input}  # fmt: skip
        inputs.update(extra_inputs or {})
        for read in reads:
            read.folder.check_made_with(read.expected)
        action = self._action(expected, inputs, split_hash, resume, output)
        if action != "resume":
            return Decision(action, inputs, self.manifest)
        from lightning_talos.runs.checkpoints import resume_checkpoint

        start = resume_checkpoint(self.path, rebuild=expected.retrain)
        return Decision(action, inputs, self.manifest, start)

    def _action(
        self,
        expected: Expected,
        inputs: dict[str, str],
        split_hash: str,
        resume: str,
        output: str | None,
    ) -> str:
        manifest = self.manifest
        if resume == "never" or manifest is None:
            return "fresh"
        self.check_reusable(expected.config, split_hash)
        if manifest.get("inputs", {}) != inputs:
            return "fresh"  # an upstream stage was re-run: never reuse what was built on the old
        if expected.epochs is None:
            present = output is None or (self.path / output).is_file()
            return "done" if self.done and present else "fresh"
        if self.done and manifest.get("epochs_completed", 0) >= expected.epochs:
            return "done"
        return "resume"

    def record(
        self,
        record: Record,
        work: Callable[[Record], None],
        *,
        cfg: DictConfig | None = None,
        fresh: bool,
        write: bool = True,
    ) -> dict[str, Any]:
        """Run ``work`` as this stage and record it; returns the final manifest.

        Before: clear the folder (``fresh``), write the resolved ``cfg`` and ``record.manifest``
        (``running``). ``work(record)`` then trains or attacks, updating ``record.manifest`` and
        filling ``record.outputs`` (file name -> JSON payload). After it returns: the outputs,
        then the final manifest. An exception leaves the manifest as written before (or as a
        signal handler marked it). ``write=False`` (DDP ranks other than 0) writes nothing.
        """
        if write:
            if fresh and self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            if cfg is not None:
                _save_config(cfg, self.path)
            write_json(self.path / "manifest.json", record.manifest)
        self._manifest, self._read = record.manifest, True
        work(record)
        if write:
            for name, payload in record.outputs.items():
                write_json(self.path / name, payload)
            write_json(self.path / "manifest.json", record.manifest)
        return record.manifest


def _read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"corrupt manifest {path}: {err}; remove the folder to retrain") from None


def _save_config(cfg: DictConfig, stage_dir: Path) -> None:
    """The resolved config beside the stage's outputs (written atomically)."""
    tmp = stage_dir / "config.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(stage_dir / "config.yaml")
