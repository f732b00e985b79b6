"""The stage registry: the one place that says what each stage and each method is.

A **training stage** trains one LightningModule per role (``target``, ``shadow``) into
``<run>/<stage>-<role>/``; an **attack stage** reads a method's trained models and writes
``<run>/<stage>-<method>/<stage>.json``; a **method** is a model the attacks audit, named by the
training stage that produces its classifier. The CLI, the runners, feature loading, the audit
graph, ``results.json``, the report and W&B read these records; no other module spells a stage or
method name. A new stage or method is one file with its functions plus one ``register_*`` call
(see ``tests/integration/test_registry.py`` for a stage registered from a test file alone).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig

from lightning_talos.analysis.names import PAPER_ATTACKS, PAPER_METHODS
from lightning_talos.errors import UserError

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from torch import nn

    from lightning_talos.runs.context import RunContext

ROLES = ("target", "shadow")

Builder = Callable[["RunContext", str, Mapping[str, Path]], "pl.LightningModule"]


def lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported at its first call: the registry stays importable without torch
    (the report and ``compare`` read it)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


_BUILDERS = "lightning_talos.stages.builders"
_ATTACK = "lightning_talos.stages.attack"
_REFERENCES = "lightning_talos.stages.references"


def _no_upstream(cfg: DictConfig) -> tuple[str, ...]:
    return ()


def _no_roles(cfg: DictConfig) -> tuple[str, ...]:
    return ()


def _two_views(cfg: DictConfig) -> dict[str, Any]:
    return {"use": "two_views"}


def _flip(cfg: DictConfig) -> dict[str, Any]:
    return {"use": "flip"}


@dataclass(frozen=True)
class TrainStage:
    """A stage that trains one model per role.

    Args:
        name: the stage (and folder prefix ``<name>-<role>``).
        summary: one line for ``--help``.
        sections: config sections its result depends on (besides ``seed`` and ``data``).
        epochs_section: the section whose ``max_epochs`` (null: ``trainer.max_epochs``) counts.
        build: makes the LightningModule from the run, the role and the upstream folders.
        data: keyword settings of the stage's ``TalosDataModule`` (its augmentation ``use``).
        upstream: the stages it reads, from the config.
        load: loads its trained classifier from a checkpoint (classifier stages only).
        command: the CLI command that runs it (``extra`` args added in messages).
        extra: arguments that select this stage among those sharing ``command``.
        needs_attribute: the dataset must have a sensitive attribute.
        reads: the upstream stages in words, for ``--help``.
        precision: the trainer precision this stage needs, whatever ``trainer.precision`` says.
        record: what the trained module tells ``results.json`` (a defence's settings and
            guarantee): ``module -> JSON-able dict``, kept in ``metrics.json`` as ``defence``.
    """

    name: str
    summary: str
    sections: tuple[str, ...]
    epochs_section: str
    build: Builder
    data: Callable[[DictConfig], dict[str, Any]] = _flip
    upstream: Callable[[DictConfig], tuple[str, ...]] = _no_upstream
    load: Callable[[Path], nn.Module] | None = None
    command: str = ""
    extra: str = ""
    needs_attribute: bool = False
    reads: str = ""
    precision: str | None = None
    record: Callable[[Any], dict[str, Any]] | None = None

    def epochs(self, cfg: DictConfig) -> int:
        """Epochs of the stage: its own ``max_epochs``, else ``trainer.max_epochs``."""
        own = cfg[self.epochs_section].max_epochs
        return int(cfg.trainer.max_epochs if own is None else own)

    def rebuild(self, cfg: DictConfig, role: str) -> str:
        """The command line that (re)trains this stage for ``role`` in the same run."""
        family = role_family(role)
        if family is not None and family.command:
            return (
                f"lightning-talos {family.command} method=<the method {self.name} belongs to> "
                f"run.dir={cfg.run.dir} run.name={cfg.run.name}"
            )
        extra = f" {self.extra}" if self.extra else ""
        return (
            f"lightning-talos {self.command or self.name}{extra} role={role} "
            f"run.dir={cfg.run.dir} run.name={cfg.run.name}"
        )


@dataclass(frozen=True)
class AttackStage:
    """A stage that attacks one method's trained models.

    Args:
        name: the stage (folder ``<name>-<method>``, output ``<name>.json``, CLI command).
        summary: one line for ``--help``.
        sections: config sections its result depends on (besides ``seed`` and ``data``).
        compute: the attack: ``(run, model source) -> JSON-able result``.
        summarize: the method's ``results.json`` entry made from that result.
        roles: roles of the method's model it reads.
        finish: figures and W&B logging after the result is written (``cfg, folder, result``).
        needs_attribute: the dataset must have a sensitive attribute.
        more_roles: further roles of the method's model it reads, from the config (e.g. the
            reference models ``ref-<j>``); the audit trains them with the model's upstream
            stages, and their completion ids are inputs of the attack.
    """

    name: str
    summary: str
    sections: tuple[str, ...]
    compute: Callable[[RunContext, Any], dict[str, Any]]
    summarize: Callable[[dict[str, Any]], Any]
    roles: tuple[str, ...] = ROLES
    finish: Callable[[DictConfig, Path, dict[str, Any]], None] | None = None
    needs_attribute: bool = False
    more_roles: Callable[[DictConfig], tuple[str, ...]] = _no_roles

    @property
    def output(self) -> str:
        return f"{self.name}.json"

    def all_roles(self, cfg: DictConfig) -> tuple[str, ...]:
        """``roles`` and the ``more_roles`` the config asks for."""
        return (*self.roles, *self.more_roles(cfg))


@dataclass(frozen=True)
class RoleFamily:
    """Training roles beyond target and shadow, named ``<prefix>-<j>`` (e.g. reference models).

    A stage trained for such a role is an ordinary stage run in ``<stage>-<prefix>-<j>/``
    whose data (members to train on, non-members to validate on) comes from ``data``.

    Args:
        prefix: the roles' name prefix.
        data: ``(run, role) -> splits`` with ``members(role)``, ``nonmembers(role)`` and
            ``hash`` (recorded among the stage's inputs, so other data re-trains it).
        command: the CLI command that trains the family's roles (for messages).
    """

    prefix: str
    data: Callable[[RunContext, str], Any]
    command: str = ""


@dataclass(frozen=True)
class Method:
    """A model the attacks audit.

    Args:
        name: the method (``results.json`` key, ``method=`` value).
        label: its name in tables and figures.
        model_stage: the training stage that produces its classifier.
        needs_attribute: the dataset must have a sensitive attribute.
        default: audited unless ``methods=[...]`` says otherwise.
        variants: the methods this one stands for under a config (one per value of a list
            setting), registered with their stages when called; empty: the method itself.
    """

    name: str
    label: str
    model_stage: str
    needs_attribute: bool = False
    default: bool = True
    variants: Callable[[DictConfig], tuple[Method, ...]] | None = None


@dataclass
class Registry:
    """Stages and methods by name, in registration order (= dependency order)."""

    train: dict[str, TrainStage] = field(default_factory=dict)
    attack: dict[str, AttackStage] = field(default_factory=dict)
    methods: dict[str, Method] = field(default_factory=dict)
    roles: dict[str, RoleFamily] = field(default_factory=dict)


REGISTRY = Registry()


def register_role_family(family: RoleFamily) -> RoleFamily:
    """Add (or replace) a family of extra training roles."""
    REGISTRY.roles[family.prefix] = family
    return family


def role_family(role: str) -> RoleFamily | None:
    """The family of an extra training role (``None`` for target and shadow)."""
    prefix, _, rest = role.rpartition("-")
    family = REGISTRY.roles.get(prefix)
    return family if family is not None and rest.isdigit() else None


def register_train_stage(stage: TrainStage) -> TrainStage:
    """Add (or replace) a training stage; its upstream stages must be registered first."""
    REGISTRY.train[stage.name] = stage
    return stage


def register_attack_stage(stage: AttackStage) -> AttackStage:
    """Add (or replace) an attack stage; the audit runs it on every audited method."""
    REGISTRY.attack[stage.name] = stage
    return stage


def register_method(method: Method) -> Method:
    """Add (or replace) a method; its model stage must be registered first."""
    if method.model_stage not in REGISTRY.train:
        raise ValueError(f"method {method.name}: unknown model stage {method.model_stage!r}")
    REGISTRY.methods[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a stage or method of that name (tests that register their own)."""
    for table in (REGISTRY.train, REGISTRY.attack, REGISTRY.methods):
        table.pop(name, None)


def train_stage(name: str) -> TrainStage:
    """The training stage ``name``.

    Raises:
        UserError: unknown name, listing the valid ones.
    """
    if name not in REGISTRY.train:
        raise UserError(f"unknown training stage '{name}'; valid: {', '.join(REGISTRY.train)}")
    return REGISTRY.train[name]


def attack_stage(name: str) -> AttackStage:
    """The attack stage ``name``.

    Raises:
        UserError: unknown name, listing the valid ones.
    """
    if name not in REGISTRY.attack:
        raise UserError(f"unknown attack stage '{name}'; valid: {', '.join(REGISTRY.attack)}")
    return REGISTRY.attack[name]


def method(name: str) -> Method:
    """The method ``name``.

    Raises:
        UserError: unknown name, listing the valid ones.
    """
    if name not in REGISTRY.methods:
        raise UserError(f"unknown method '{name}'; valid: {', '.join(REGISTRY.methods)}")
    return REGISTRY.methods[name]


def method_names() -> tuple[str, ...]:
    """Every registered method, in registration order."""
    return tuple(REGISTRY.methods)


def method_labels() -> dict[str, str]:
    """Method name -> its label in tables and figures."""
    return {m.name: m.label for m in REGISTRY.methods.values()}


def audited_methods(cfg: DictConfig, *, with_attribute: bool) -> list[Method]:
    """The methods an audit covers: ``methods=[...]`` or the defaults, less those that need a
    sensitive attribute the dataset lacks.

    Raises:
        UserError: an unknown method name, or one that needs an attribute the dataset lacks.
    """
    if cfg.methods:
        chosen = [v for n in cfg.methods for v in _expand(cfg, method(str(n)))]
        missing = [m.name for m in chosen if m.needs_attribute and not with_attribute]
        if missing:
            raise UserError(
                f"{cfg.data.name} has no sensitive attribute: cannot audit {', '.join(missing)}"
            )
        return chosen
    defaults = [v for m in list(REGISTRY.methods.values()) if m.default for v in _expand(cfg, m)]
    return [m for m in defaults if with_attribute or not m.needs_attribute]


#: Variants registered for the last config read, by method (a new config replaces them).
_MADE: dict[str, tuple[str, ...]] = {}


def _expand(cfg: DictConfig, chosen: Method) -> list[Method]:
    if chosen.variants is None:
        return [chosen]
    made = chosen.variants(cfg)
    for stale in set(_MADE.get(chosen.name, ())) - {m.name for m in made}:
        unregister(stale)
    _MADE[chosen.name] = tuple(m.name for m in made)
    return list(made) or [chosen]


def register_variants(cfg: DictConfig) -> None:
    """Register every method's config-made variants (and their stages) for ``cfg``.

    Raises:
        UserError: when a setting the variants are made from is invalid.
    """
    for each in list(REGISTRY.methods.values()):
        _expand(cfg, each)


def entry_methods(results: Mapping[str, Any]) -> list[str]:
    """Method entries a results dict may hold: the registered methods, then config-made
    variants (``<method>_...``) of a method that has some, which a process that never read
    that run's config has not registered."""
    names = list(REGISTRY.methods)
    bases = [m.name for m in REGISTRY.methods.values() if m.variants is not None]
    made = [
        key
        for key, value in results.items()
        if key not in names
        and isinstance(value, dict)
        and any(key.startswith(f"{base}_") for base in bases)
    ]
    return names + made


def upstream_closure(cfg: DictConfig, name: str) -> list[str]:
    """``name`` and every training stage it reads, upstream first."""
    out: list[str] = []
    for source in train_stage(name).upstream(cfg):
        out += [s for s in upstream_closure(cfg, source) if s not in out]
    return [*out, name]


def stage_for_command(cfg: DictConfig, command: str) -> TrainStage:
    """The training stage a CLI command runs (``linear`` picks it by ``method``).

    Raises:
        UserError: when ``method`` names no stage of that command.
    """
    register_variants(cfg)
    stages = [s for s in REGISTRY.train.values() if (s.command or s.name) == command]
    if len(stages) == 1:
        return stages[0]
    chosen = REGISTRY.methods.get(str(cfg.method))
    for stage in stages:
        if chosen is not None and chosen.model_stage == stage.name:
            return stage
    valid = [m.name for m in REGISTRY.methods.values() if m.model_stage in {s.name for s in stages}]
    raise UserError(f"{command} trains the classifier of method={'|'.join(valid)}")


def train_commands() -> list[str]:
    """CLI commands of the training stages, in registration order."""
    return list(dict.fromkeys(s.command or s.name for s in REGISTRY.train.values()))


# --- the paper's stages and methods ---------------------------------------------------------


def _pretrain_if_fine_tuned(cfg: DictConfig) -> tuple[str, ...]:
    return ("pretrain",) if cfg.talos.init_from_pretrain else ()


def _talos_data(cfg: DictConfig) -> dict[str, Any]:
    return {"use": "two_views", "with_original": str(cfg.talos.views) == "original"}


register_train_stage(
    TrainStage(
        name="pretrain",
        summary="SimCLR encoder (+ online linear probe on detached features) for one role",
        sections=("model", "simclr"),
        epochs_section="simclr",
        build=lazy(_BUILDERS, "build_simclr"),
        data=_two_views,
    )
)
register_train_stage(
    TrainStage(
        name="talos",
        summary="Talos encoder: SimCLR + gradient-reversal adversary on the sensitive attribute",
        sections=("model", "simclr", "talos"),
        epochs_section="talos",
        build=lazy(_BUILDERS, "build_talos"),
        data=_talos_data,
        upstream=_pretrain_if_fine_tuned,
        needs_attribute=True,
        reads="pretrain-ROLE when talos.init_from_pretrain=true",
    )
)
register_train_stage(
    TrainStage(
        name="linear",
        summary="linear layer on the frozen SimCLR encoder (the paper's contrastive model)",
        sections=("model", "linear"),
        epochs_section="linear",
        build=lazy(_BUILDERS, "build_linear"),
        upstream=lambda cfg: ("pretrain",),
        load=lazy(_BUILDERS, "load_linear"),
        extra="method=contrastive",
        reads="pretrain-ROLE",
    )
)
register_train_stage(
    TrainStage(
        name="talos_linear",
        summary="linear layer on the frozen Talos encoder",
        sections=("model", "linear"),
        epochs_section="linear",
        build=lazy(_BUILDERS, "build_linear"),
        upstream=lambda cfg: ("talos",),
        load=lazy(_BUILDERS, "load_linear"),
        command="linear",
        extra="method=talos",
        needs_attribute=True,
        reads="talos-ROLE",
    )
)
register_train_stage(
    TrainStage(
        name="supervised",
        summary="the supervised baseline: the same backbone + linear head trained end to end",
        sections=("model", "supervised"),
        epochs_section="supervised",
        build=lazy(_BUILDERS, "build_supervised"),
        load=lazy(_BUILDERS, "load_supervised"),
    )
)

SUPERVISED, CONTRASTIVE, TALOS = PAPER_METHODS
register_method(Method(SUPERVISED, "Supervised", model_stage="supervised"))
register_method(Method(CONTRASTIVE, "Contrastive", model_stage="linear"))
register_method(Method(TALOS, "Talos", model_stage="talos_linear", needs_attribute=True))

register_attack_stage(
    AttackStage(
        name=PAPER_ATTACKS[0],
        summary="membership inference (NN, metric, label-only) calibrated on the shadow model",
        sections=("mia", "attacks"),
        compute=lazy(_ATTACK, "compute_mia"),
        summarize=lazy(_ATTACK, "summarize_mia"),
        finish=lazy(_ATTACK, "finish_mia"),
        more_roles=lazy(_REFERENCES, "reference_roles"),
    )
)
register_attack_stage(
    AttackStage(
        name=PAPER_ATTACKS[1],
        summary="attribute inference: fresh probes on the target's embeddings",
        sections=("aia",),
        compute=lazy(_ATTACK, "compute_aia"),
        summarize=lazy(_ATTACK, "summarize_aia"),
        roles=("target",),
        finish=lazy(_ATTACK, "finish_aia"),
        needs_attribute=True,
    )
)


# --- defences beside Talos (issue 14): LEACE and DP-SGD -------------------------------------

_DEFENCES = "lightning_talos.stages.defences"
#: The concept-erasure defence and the DP-SGD baseline (``methods=[...]`` asks for them).
LEACE, DP_SUPERVISED = "leace", "dp_supervised"


def dp_epsilons(cfg: DictConfig) -> list[float]:
    """``dp.epsilon`` as a list of targets (one number or a list of them; ``inf``: clipping
    only, no noise).

    Raises:
        UserError: for a value that is not a positive number, an empty list or a repeat.
    """
    raw = cfg.dp.epsilon
    values = list(raw) if isinstance(raw, ListConfig | list | tuple) else [raw]
    # inf (or .inf): clipping only, no noise (an epsilon-infinity point beside the others)
    values = [float("inf") if str(v).lower() in ("inf", ".inf") else v for v in values]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not values or len(numbers) < len(values) or min(numbers) <= 0:
        raise UserError(f"dp.epsilon must be a positive number or a list of them, got {raw}")
    if len(set(numbers)) < len(numbers):
        raise UserError(f"dp.epsilon lists a value twice: {raw}")
    return [float(v) for v in numbers]


def _dp_variants(cfg: DictConfig) -> tuple[Method, ...]:
    """One DP-SGD stage and method per ``dp.epsilon`` value when it lists several
    (``dp_supervised_eps1``, ``dp_supervised_eps8``, ...); none for one value."""
    values = dp_epsilons(cfg)
    if len(values) == 1:
        return ()
    stage, base = REGISTRY.train[DP_SUPERVISED], REGISTRY.methods[DP_SUPERVISED]
    listed = ",".join(f"{e:g}" for e in values)
    made = []
    for epsilon in values:
        name = f"{DP_SUPERVISED}_eps{epsilon:g}".replace(".", "p")
        register_train_stage(
            replace(
                stage,
                name=name,
                command=stage.command or stage.name,
                build=partial(stage.build, epsilon=epsilon),
                extra=f"method={name} dp.epsilon=[{listed}]",
            )
        )
        made.append(
            register_method(
                replace(
                    base,
                    name=name,
                    label=f"{base.label} eps={epsilon:g}",
                    model_stage=name,
                    default=False,
                    variants=None,
                )
            )
        )
    return tuple(made)


register_train_stage(
    TrainStage(
        name=LEACE,
        summary="LEACE: frozen SimCLR encoder -> attribute eraser (fitted on the role's train "
        "quarter) -> linear layer",
        sections=("model", "linear", "leace"),
        epochs_section="linear",
        build=lazy(_DEFENCES, "build_leace"),
        upstream=lambda cfg: ("pretrain",),
        load=lazy(_DEFENCES, "load_leace"),
        command="linear",
        extra=f"method={LEACE}",
        needs_attribute=True,
        reads="pretrain-ROLE",
        record=lazy(_DEFENCES, "leace_record"),
    )
)
register_train_stage(
    TrainStage(
        name=DP_SUPERVISED,
        summary="the supervised baseline trained with DP-SGD (Opacus; GroupNorm backbone); "
        "with a dp.epsilon list, the value's model is method=dp_supervised_eps<E>",
        sections=("model", "dp"),
        epochs_section="dp",
        build=lazy(_DEFENCES, "build_dp_supervised"),
        load=lazy(_DEFENCES, "load_dp_supervised"),
        precision="32-true",  # per-sample norms in 16 bits can exceed the clipping bound
        record=lazy(_DEFENCES, "dp_record"),
    )
)
register_method(Method(LEACE, "LEACE", model_stage=LEACE, needs_attribute=True, default=False))
register_method(
    Method(
        DP_SUPERVISED,
        "DP-SGD",
        model_stage=DP_SUPERVISED,
        default=False,
        variants=_dp_variants,
    )
)

#: Reference models of LiRA and RMIA: roles ``ref-<j>`` trained on halves of a pool
#: (``stages/references.py``).
register_role_family(RoleFamily("ref", lazy(_REFERENCES, "reference_splits"), command="references"))
