"""Structured configs: the single source of defaults and types.

YAML files under ``configs/`` and command-line ``key=value`` overrides are merged on top of these
dataclasses with OmegaConf's struct mode on, so a typo'd key or a wrong type fails loudly.
String settings with a fixed set of values are :class:`Choice` enums, which OmegaConf validates
during the merge (method names are checked against the stage registry, where new ones are
registered). Values derived from user keys (split seed, epochs per stage, ...) are computed in
code and never written back into the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Choice(str, Enum):
    """A setting with a fixed set of values: OmegaConf validates it, and it compares, hashes,
    prints and serialises as its plain string value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


def _choice(name: str, values: tuple[str, ...]) -> type[Choice]:
    return Choice(name, {v: v for v in values})  # type: ignore[return-value]


Dataset = _choice("Dataset", ("synthetic", "cifar10", "cifar100", "stl10", "utkface", "celeba"))
AugMode = _choice("AugMode", ("batched", "pil"))
Stl10Part = _choice("Stl10Part", ("labelled", "unlabeled"))
Backbone = _choice("Backbone", ("small_cnn", "resnet18", "resnet50", "mobilenet_v2"))
Stem = _choice("Stem", ("imagenet", "cifar"))
OptimName = _choice("OptimName", ("adam", "adamw", "sgd", "lars"))
Schedule = _choice("Schedule", ("cosine", "constant"))
AdversaryLocation = _choice("AdversaryLocation", ("embedding", "projection"))
AdversaryViews = _choice("AdversaryViews", ("augmented", "original"))
PassSchedule = _choice("PassSchedule", ("alternating", "simultaneous"))
LambdaSchedule = _choice("LambdaSchedule", ("constant", "dann"))
Precision = _choice("Precision", ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"))
LoggerMode = _choice("LoggerMode", ("auto", "online", "offline", "disabled"))
Resume = _choice("Resume", ("auto", "never"))
Role = _choice("Role", ("target", "shadow"))
MiaAttack = _choice(
    "MiaAttack", ("nn", "metric", "label_only", "augmentation", "lira", "rmia", "encoder")
)
#: The attacks run unless ``attacks=[...]`` says otherwise: the paper's. LiRA and RMIA train
#: reference models (``mia.references`` per method), so they are asked for by name.
PAPER_MIA_ATTACKS = ("nn", "metric", "label_only", "augmentation")
ReferenceMode = _choice("ReferenceMode", ("offline", "online"))
AiaProbe = _choice("AiaProbe", ("mlp", "logistic", "knn"))
LeaceMethod = _choice("LeaceMethod", ("leace", "orth"))
DpAccountant = _choice("DpAccountant", ("rdp", "prv"))
LauncherName = _choice("LauncherName", ("none", "local", "slurm"))
EncoderFormat = _choice(
    "EncoderFormat",
    ("auto", "torchvision", "timm", "lightly", "solo_learn", "lightning", "state_dict"),
)
EncoderStem = _choice("EncoderStem", ("auto", "imagenet", "cifar"))
EncoderNormalize = _choice("EncoderNormalize", ("imagenet", "none"))


@dataclass
class AugConfig:
    """SimCLR view augmentation (PAPER.md's list is the default)."""

    # batched: per-sample tensor augmentation inside the training step (on the accelerator);
    # pil: torchvision on PIL images in the DataLoader workers. Default batched: the same
    # operations on whole batches of tensors outrun per-image PIL by an order of magnitude, so
    # the data path stops bounding a SimCLR epoch (`make bench`: aug_batched_vs_pil,
    # datapath_vs_model; README "Speed").
    mode: AugMode = AugMode.batched
    crop_scale_min: float = 0.08
    crop_scale_max: float = 1.0
    hflip_p: float = 0.5
    vflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_kernel_frac: float = 0.1
    blur_sigma_min: float = 0.1
    blur_sigma_max: float = 2.0


@dataclass
class SyntheticConfig:
    """The embedded dataset (see ``lightning_talos.data.formats.synthetic``)."""

    quarter_size: int = 2000
    label_noise: float = 0.2
    pixel_noise: float = 0.03


@dataclass
class DataConfig:
    name: Dataset = Dataset.synthetic
    root: str | None = None
    image_size: int = 32
    # null = the dataset's default (class, gender, Male, shape); see `lightning-talos data`.
    task_label: str | None = None
    # null = the dataset's default (none for CIFAR/STL-10, race, 2*Mouth_Slightly_Open+Smiling).
    sensitive_attribute: str | None = None
    # Cap on the pooled dataset before splitting (quick runs); null = all.
    pool_size: int | None = None
    verify_checksums: bool = True
    download: bool = False
    celeba_subset: int = 30000
    stl10_part: Stl10Part = Stl10Part.labelled
    # Decoded, resized pools of JPEG datasets are cached here (null = ~/.cache/lightning_talos).
    cache_dir: str | None = None
    batch_size: int = 512
    eval_batch_size: int = 512
    # 0: with batched augmentation the loader only slices uint8 tensors held in memory, so
    # worker processes would add start-up and IPC for no work. Raise it for data.aug.mode=pil.
    num_workers: int = 0
    aug: AugConfig = field(default_factory=AugConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    backbone: Backbone = Backbone.resnet18
    stem: Stem = Stem.imagenet
    proj_hidden_dim: int | None = None  # null = the embedding size d (PAPER.md)
    proj_dim: int = 256
    # Convolutions run faster in channels-last on the CPUs and GPUs we use (README "Speed").
    channels_last: bool = True


@dataclass
class OptimConfig:
    name: OptimName = OptimName.adam
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: Schedule = Schedule.cosine
    warmup_epochs: float = 0.0


@dataclass
class SimCLRConfig:
    temperature: float = 0.07
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_epochs: int | None = None  # null = trainer.max_epochs
    probe_lr: float = 1e-3
    # Visible switch (off by default): initialise the encoder from a SimCLR checkpoint pretrained
    # on STL-10 `unlabeled`. It gives the contrastive arm data the supervised arm never sees.
    init_checkpoint: str | None = None


@dataclass
class LinearConfig:
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-2))
    max_epochs: int | None = None


@dataclass
class SupervisedConfig:
    # lr 0.05 with Adam is the released recipe (sic); presets may lower it.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.05))
    max_epochs: int | None = None


@dataclass
class TalosConfig:
    # Defaults from the synthetic demo's measurements (README "Talos settings"): a weak GRL or
    # few adversary steps leave the attribute readable by a fresh probe, so the defaults use a
    # strong, DANN-ramped GRL with several adversary steps per encoder step. The paper presets
    # pin the released lambda=1, alternating.
    lambda_: float = 10.0  # exposed as `talos.lambda` (renamed below: `lambda` is a keyword)
    location: AdversaryLocation = AdversaryLocation.embedding
    views: AdversaryViews = AdversaryViews.augmented
    schedule: PassSchedule = PassSchedule.simultaneous
    adversary_steps: int = 10
    lambda_schedule: LambdaSchedule = LambdaSchedule.dann
    adversary_lr: float = 3e-3
    adversary_weight_decay: float = 0.0
    adversary_hidden: list[int] = field(default_factory=lambda: [64, 64])
    max_epochs: int | None = None
    # Start from this role's SimCLR encoder instead of from scratch (the paper trains from
    # scratch; the CPU demo fine-tunes to fit its time budget).
    init_from_pretrain: bool = False


def _rename_field(cls: type, old: str, new: str) -> None:
    """Rename a dataclass field after creation, for config keys that are Python keywords."""
    spec = cls.__dataclass_fields__.pop(old)  # type: ignore[attr-defined]
    spec.name = new
    cls.__dataclass_fields__[new] = spec  # type: ignore[attr-defined]
    cls.__annotations__ = {(new if k == old else k): v for k, v in cls.__annotations__.items()}
    setattr(cls, new, getattr(cls, old))


_rename_field(TalosConfig, "lambda_", "lambda")


@dataclass
class TrainerConfig:
    max_epochs: int = 100
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Precision = Precision["32-true"]
    sync_batchnorm: bool = False
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    limit_train_batches: float | None = None
    fast_dev_run: bool = False
    deterministic: bool = False
    enable_progress_bar: bool = True
    # last.ckpt is written every epoch; also every N optimizer steps / N minutes (null = off).
    checkpoint_every_n_steps: int | None = None
    checkpoint_every_minutes: float | None = None
    # Membership AUC of the stage's classifier on its members vs non-members every N epochs
    # (callbacks.PrivacyAudit, privacy_history.json in the stage folder); null = off.
    privacy_audit_every_n_epochs: int | None = None


@dataclass
class LoggerConfig:
    # auto = online when a W&B API key is configured, else offline (sync later with `wandb sync`).
    mode: LoggerMode = LoggerMode.auto
    project: str = "lightning_talos"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    dir: str = "runs"
    name: str = "default"
    # auto: resume a matching run, refuse a changed one; never: start over, replacing outputs.
    resume: Resume = Resume.auto


@dataclass
class JobResources:
    """What one kind of audit job (training stage or attack stage) asks the scheduler for."""

    partition: str | None = None  # null = launcher.partition
    time_min: int = 60  # the job's time limit (training stages requeue past it)
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None  # null = the partition's default


@dataclass
class LauncherConfig:
    """How ``audit`` runs its stage graph (``configs/launcher/``): ``none`` in this process one
    stage after the other, ``local`` as up to ``parallel`` processes on this machine, ``slurm``
    as one SLURM job per stage (submitit)."""

    name: LauncherName = LauncherName.none
    parallel: int = 2  # local: stages at once
    partition: str | None = None  # slurm: null = the cluster's default partition
    account: str | None = None
    qos: str | None = None
    train: JobResources = field(default_factory=JobResources)
    attack: JobResources = field(default_factory=JobResources)
    sbatch_extra: list[str] = field(default_factory=list)  # e.g. ["--constraint=a100"]
    setup: list[str] = field(default_factory=list)  # shell lines run before each job
    signal_delay_s: int = 90  # training jobs: SIGUSR1 this long before the limit, then requeue
    requeue: bool = True
    array_parallelism: int = 64  # reference models running at once per method


@dataclass
class MIAConfig:
    nn_top_k: int = 2
    nn_hidden: list[int] = field(default_factory=lambda: [32, 32])
    nn_epochs: int = 100
    nn_lr: float = 1e-3
    nn_batch_size: int = 256
    # Label-only attacks query the model; they run on a seeded subset of each quarter.
    # The boundary search (HopSkipJump-style): the paper's setting is 500 + 500 samples, at
    # least 7 iterations and about 100 gradient probes; each bisection stops at a relative
    # bracket `hsj_tolerance` (null = HopSkipJump's d^-1.5) with an absolute L2 floor.
    label_only_samples: int = 500
    hsj_iterations: int = 7
    hsj_grad_samples: int = 100
    hsj_tolerance: float | None = None
    hsj_abs_tolerance: float = 1e-5
    aug_n: int = 10
    aug_max_shift: int = 2
    aug_samples: int | None = None  # null = every sample of each quarter
    bootstrap: int = 1000
    # Reference models of LiRA and RMIA (attacks=[...,lira,rmia]): how many per method, and
    # their pool: offline = the attacker's data (shadow quarters), online = also the target's
    # candidates. reference_seed draws the inclusion matrix (null = seed).
    references: int = 4
    reference_mode: ReferenceMode = ReferenceMode.offline
    reference_seed: int | None = None
    # LiRA queries: each example and its horizontal flip, shifted by these pixel offsets
    # (reflect padding), averaged; one pooled variance below lira_global_variance_below
    # references (Carlini et al.: per-example variances need about 64).
    lira_flip: bool = True
    lira_shifts: list[int] = field(default_factory=lambda: [0])
    lira_global_variance_below: int = 64
    # RMIA as its authors' code runs it (ML Privacy Meter, modules/mia/attacks/rmia.py):
    # population points counted when the likelihood ratio exceeds gamma = 1; the offline
    # interpolation a in [0, 1], or auto: tuned on the reference models only (tune_offline_a,
    # needs 3 references offline); population size and softmax temperature.
    rmia_gamma: float = 1.0
    rmia_a: Any = "auto"
    rmia_population: int = 1000
    rmia_temperature: float = 1.0
    # Encoder attacks (attacks=[...,encoder]): augmented views per image, the MLP on their
    # sorted similarities, and a seeded subset per quarter (null = every sample).
    encoder_views: int = 10
    encoder_hidden: list[int] = field(default_factory=lambda: [32, 32])
    encoder_epochs: int = 100
    encoder_lr: float = 1e-3
    encoder_samples: int | None = None


@dataclass
class AIAConfig:
    probes: list[AiaProbe] = field(default_factory=lambda: list(AiaProbe))
    mlp_hidden: list[int] = field(default_factory=lambda: [128, 128, 128])
    mlp_lr: float = 0.01
    mlp_epochs: int = 100
    mlp_batch_size: int = 512
    knn_k: int = 10
    bootstrap: int = 1000


@dataclass
class ClaimsConfig:
    """The attacks and probes each of the paper's claims is judged on, declared before anything
    runs (analysis/claims.py). The paper's by default: its membership attacks (NN, the four metric
    attacks, label-only) and the three probes the report runs; any other attack that runs
    (augmentation, LiRA, RMIA, encoder) gets its own verdict line beside the headline."""

    membership_attacks: list[MiaAttack] = field(
        default_factory=lambda: [MiaAttack(a) for a in ("nn", "metric", "label_only")]
    )
    attribute_probes: list[AiaProbe] = field(default_factory=lambda: list(AiaProbe))


@dataclass
class LeaceConfig:
    """The LEACE-defended contrastive model (method ``leace``): frozen encoder -> eraser fitted
    on the role's train quarter and its attribute -> linear layer (``linear`` settings)."""

    # leace: least change to the embedding; orth: orthogonal projection (guards too, changes more)
    method: LeaceMethod = LeaceMethod.leace
    # Ledoit-Wolf shrinkage of the covariance: keeps whitening stable when n is not >> d.
    shrinkage: bool = True


@dataclass
class DPConfig:
    """The supervised baseline trained with DP-SGD (method ``dp_supervised``, GroupNorm
    backbone). ``epsilon`` is a number or a list: a list audits one model per value."""

    epsilon: Any = 8.0
    delta: float | None = None  # null = min(1 / (2 x quarter size), 1e-5)
    max_grad_norm: float = 1.0  # per-sample clipping norm C
    # null: the smallest noise meeting dp.epsilon; a number >= 0: that noise multiplier, and
    # dp.epsilon is not used (0: clipping only, reported as epsilon infinity).
    noise_multiplier: float | None = None
    # Expected Poisson batch size (null = data.batch_size); DP-SGD wants large batches: the
    # noise is added once per step and divided by the batch (Tramer & Boneh 2021).
    batch_size: int | None = None
    # Augmentation multiplicity (De et al. 2022): views per sampled image, their gradients
    # averaged before clipping (random flip + shift of up to augmult_shift px).
    augmult: int = 1
    augmult_shift: int = 0
    accountant: DpAccountant = DpAccountant.rdp
    # Not tuned for DP-SGD: Adam without weight decay, as the synthetic supervised preset.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    max_epochs: int | None = None  # null = trainer.max_epochs (the noise is set for these)


@dataclass
class EncoderConfig:
    """``audit-encoder``: an encoder checkpoint trained outside this framework
    (``models/external.py`` says what each format means)."""

    checkpoint: str | None = None
    format: EncoderFormat = EncoderFormat.auto
    arch: str = "resnet18"  # a torchvision name, or a timm name
    key_prefix: str | None = None  # null = auto (backbone., encoder., ... / module.)
    stem: EncoderStem = EncoderStem.auto  # auto: CIFAR stem when the first conv is 3x3
    normalize: EncoderNormalize = EncoderNormalize.imagenet
    # split:train|split:val|split:test, or a text file of pool indices or file names
    members: str | None = None
    nonmembers: str | None = None
    # Optional shadow encoder (same format and arch) with its own lists: calibrates thresholds
    # and the similarity-vector classifier.
    shadow: str | None = None
    shadow_members: str | None = None
    shadow_nonmembers: str | None = None
    # Seeded subset per list (null = every listed sample); augmented views per image.
    samples: int | None = None
    views: int = 10


@dataclass
class Config:
    seed: int = 0
    role: Role = Role.target
    method: str = "contrastive"
    attacks: list[MiaAttack] = field(
        default_factory=lambda: [MiaAttack(a) for a in PAPER_MIA_ATTACKS]
    )
    seeds: list[int] = field(default_factory=list)
    # Methods an audit covers (registered names; empty = the paper's).
    methods: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    talos: TalosConfig = field(default_factory=TalosConfig)
    leace: LeaceConfig = field(default_factory=LeaceConfig)
    dp: DPConfig = field(default_factory=DPConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    mia: MIAConfig = field(default_factory=MIAConfig)
    aia: AIAConfig = field(default_factory=AIAConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    claims: ClaimsConfig = field(default_factory=ClaimsConfig)
