"""Structured configs: the single source of defaults and types.

YAML files under ``configs/`` and command-line ``key=value`` overrides are merged on top of these
dataclasses with OmegaConf's struct mode on, so a typo'd key or a wrong type fails loudly.
String settings with a fixed set of values are listed in :data:`CHOICES` and validated after the
merge. Values derived from user keys (split seed, epochs per stage, ...) are computed in code and
never written back into the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASETS = ("synthetic", "cifar10", "cifar100", "stl10", "utkface", "celeba")
BACKBONES = ("small_cnn", "resnet18", "resnet50", "mobilenet_v2")
METHODS = ("supervised", "contrastive", "talos")
MIA_ATTACKS = ("nn", "metric", "label_only", "augmentation")
AIA_PROBES = ("mlp", "logistic", "knn")

#: Every string setting with a fixed set of valid values.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": DATASETS,
    "data.aug.mode": ("batched", "pil"),
    "data.stl10_part": ("labelled", "unlabeled"),
    "model.backbone": BACKBONES,
    "model.stem": ("imagenet", "cifar"),
    "simclr.optim.name": ("adam", "adamw", "sgd", "lars"),
    "simclr.optim.schedule": ("cosine", "constant"),
    "linear.optim.name": ("adam", "adamw", "sgd", "lars"),
    "linear.optim.schedule": ("cosine", "constant"),
    "supervised.optim.name": ("adam", "adamw", "sgd", "lars"),
    "supervised.optim.schedule": ("cosine", "constant"),
    "talos.location": ("embedding", "projection"),
    "talos.views": ("augmented", "original"),
    "talos.schedule": ("alternating", "simultaneous"),
    "talos.lambda_schedule": ("constant", "dann"),
    "trainer.precision": ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"),
    "logger.mode": ("auto", "online", "offline", "disabled"),
    "run.resume": ("auto", "never"),
    "role": ("target", "shadow"),
    "method": METHODS,
}

#: List settings whose items must come from a fixed set.
LIST_CHOICES: dict[str, tuple[str, ...]] = {
    "attacks": MIA_ATTACKS,
    "aia.probes": AIA_PROBES,
}


@dataclass
class AugConfig:
    """SimCLR view augmentation (PAPER.md's list is the default)."""

    # batched: per-sample tensor augmentation inside the training step (on the accelerator);
    # pil: torchvision on PIL images in the DataLoader workers. Default batched, measured by
    # `make bench` on 2 CPU cores: 22-25x the images/s of PIL for the same operations, and a
    # SimCLR epoch through the datamodule at 0.93-1.05 of model-only (PIL workers: 0.41).
    mode: str = "batched"
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
    name: str = "synthetic"
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
    stl10_part: str = "labelled"
    # Decoded, resized pools of JPEG datasets are cached here (null = ~/.cache/lightning_talos).
    cache_dir: str | None = None
    batch_size: int = 512
    eval_batch_size: int = 512
    # 0: with batched augmentation the loader only slices uint8 tensors held in memory, so
    # worker processes would add start-up and IPC for no work (data path >= 0.93 of model-only
    # with 0 workers). Raise it for data.aug.mode=pil.
    num_workers: int = 0
    aug: AugConfig = field(default_factory=AugConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    stem: str = "imagenet"
    proj_hidden_dim: int | None = None  # null = the embedding size d (PAPER.md)
    proj_dim: int = 256
    # Every model preset measured faster in channels-last (configs/model/*.yaml).
    channels_last: bool = True


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
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
    # Defaults measured on the synthetic demo (README "Talos settings"): lambda 1 with 5
    # adversary steps left a fresh probe at 1.00; lambda 10 with 10 adversary steps at lr 3e-3
    # brought every probe down. The paper presets pin the released lambda=1, alternating.
    lambda_: float = 10.0  # exposed as `talos.lambda` (renamed below: `lambda` is a keyword)
    location: str = "embedding"
    views: str = "augmented"
    schedule: str = "simultaneous"
    adversary_steps: int = 10
    lambda_schedule: str = "dann"
    adversary_lr: float = 3e-3
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
    precision: str = "32-true"
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


@dataclass
class LoggerConfig:
    # auto = online when a W&B API key is configured, else offline (sync later with `wandb sync`).
    mode: str = "auto"
    project: str = "lightning_talos"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    dir: str = "runs"
    name: str = "default"
    # auto: resume a matching run, refuse a changed one; never: start over, replacing outputs.
    resume: str = "auto"


@dataclass
class MIAConfig:
    nn_top_k: int = 2
    nn_hidden: list[int] = field(default_factory=lambda: [32, 32])
    nn_epochs: int = 100
    nn_lr: float = 1e-3
    nn_batch_size: int = 256
    # Label-only attacks query the model; they run on a seeded subset of each quarter.
    label_only_samples: int = 200
    hsj_iterations: int = 3
    hsj_grad_samples: int = 20
    aug_n: int = 10
    aug_max_shift: int = 2
    aug_samples: int | None = None  # null = every sample of each quarter
    bootstrap: int = 1000


@dataclass
class AIAConfig:
    probes: list[str] = field(default_factory=lambda: ["mlp", "logistic", "knn"])
    mlp_hidden: list[int] = field(default_factory=lambda: [128, 128, 128])
    mlp_lr: float = 0.01
    mlp_epochs: int = 100
    mlp_batch_size: int = 512
    knn_k: int = 10
    bootstrap: int = 1000


@dataclass
class Config:
    seed: int = 0
    role: str = "target"
    method: str = "contrastive"
    attacks: list[str] = field(default_factory=lambda: list(MIA_ATTACKS))
    seeds: list[int] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    talos: TalosConfig = field(default_factory=TalosConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    mia: MIAConfig = field(default_factory=MIAConfig)
    aia: AIAConfig = field(default_factory=AIAConfig)
