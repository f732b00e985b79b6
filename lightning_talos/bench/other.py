"""Augmentation and attack measurements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lightning_talos.attacks.attribute import run_probes
from lightning_talos.attacks.label_only import augmentation_robustness, boundary_distance
from lightning_talos.attacks.membership import METRICS, metric_attack, nn_attack
from lightning_talos.attacks.outputs import ModelOutputs, SplitOutputs
from lightning_talos.bench.context import Bench
from lightning_talos.bench.timing import median, stopwatch, timed
from lightning_talos.config.load import to_dict
from lightning_talos.data.batched_aug import BatchedSimCLRAugment
from lightning_talos.data.datamodule import TalosDataModule, as_float, aug_kwargs
from lightning_talos.data.splits import QUARTERS
from lightning_talos.data.transforms import SimCLRAugment, TwoViews
from lightning_talos.modules.classifier import SupervisedClassifier
from lightning_talos.runs.context import RunContext
from lightning_talos.stages.builders import model_settings
from lightning_talos.stages.features import device as features_device
from lightning_talos.stages.features import extract


def augmentation(bench: Bench) -> dict[str, Any]:
    """Two SimCLR views of one batch: batched tensor ops vs torchvision per image on PIL.

    Same settings (``data.aug``), same size, same thread count; the batched side runs on the
    bench device, the PIL side on the CPU (where DataLoader workers run it).
    """
    kwargs = aug_kwargs(bench.cfg.data.aug, bench.cfg.data.image_size)
    images = bench.batches([bench.batch_size])[0].image
    on_device = images.to(bench.device)
    batched = BatchedSimCLRAugment(**kwargs)
    pil = TwoViews(SimCLRAugment(**kwargs))

    def run_pil() -> None:
        for image in images:
            pil(image)

    reps = max(1, bench.steps // 2)
    t_batched = timed(
        lambda: batched.two_views(on_device), bench.device, repeats=bench.steps, warmup=1
    )
    t_pil = timed(run_pil, torch.device("cpu"), repeats=reps, warmup=1)
    batched_ips = len(images) / median(t_batched)
    pil_ips = len(images) / median(t_pil)
    return {
        "ratio": batched_ips / pil_ips,
        "batched_images_per_s": batched_ips,
        "pil_images_per_s": pil_ips,
        "views": 2,
        "batched_device": bench.device.type,
    }


def classifier(bench: Bench) -> SupervisedClassifier:
    """A randomly initialised supervised classifier (attack cost does not depend on training)."""
    torch.manual_seed(bench.cfg.seed)
    ctx = RunContext(bench.cfg, pool=bench.pool, splits=bench.splits)
    model = SupervisedClassifier(**model_settings(ctx), optim=to_dict(bench.cfg.supervised.optim))
    return model.to(features_device()).eval()


def extract_quarters(bench: Bench, model: SupervisedClassifier) -> dict[str, SplitOutputs]:
    """One feature-extraction pass over the four quarters, as the attack stages run it."""
    dm = TalosDataModule(bench.cfg.data, bench.pool, bench.splits, role="target", use="eval")
    return {q: extract(model, dm.eval_loader(getattr(bench.splits, q))) for q in QUARTERS}


def attack_suite(bench: Bench, quarters: dict[str, SplitOutputs]) -> dict[str, float]:
    """Seconds of each MIA/AIA attack on cached outputs (label-only excluded), config values."""
    cfg, mia, aia = bench.cfg, bench.cfg.mia, bench.cfg.aia
    target = ModelOutputs(quarters["target_train"], quarters["target_test"])
    shadow = ModelOutputs(quarters["shadow_train"], quarters["shadow_test"])
    jobs: dict[str, Callable[[], Any]] = {
        "nn": lambda: nn_attack(
            shadow,
            target,
            top_k=mia.nn_top_k,
            hidden=tuple(mia.nn_hidden),
            epochs=mia.nn_epochs,
            lr=mia.nn_lr,
            batch_size=mia.nn_batch_size,
            seed=cfg.seed,
            n_bootstrap=mia.bootstrap,
        ),  # fmt: skip
    }
    for metric in METRICS:
        jobs[f"metric_{metric}"] = lambda metric=metric: metric_attack(
            shadow, target, metric, n_bootstrap=mia.bootstrap, seed=cfg.seed
        )
    train, test = target.members, target.nonmembers
    assert train.attributes is not None and test.attributes is not None  # synthetic has one
    mlp = {
        "hidden": tuple(aia.mlp_hidden), "lr": aia.mlp_lr,
        "epochs": aia.mlp_epochs, "batch_size": aia.mlp_batch_size,
    }  # fmt: skip
    for probe in aia.probes:
        jobs[f"aia_{probe}"] = lambda probe=probe: run_probes(
            train.embeddings.numpy(), train.attributes.numpy(),
            test.embeddings.numpy(), test.attributes.numpy(),
            bench.pool.num_attribute_classes, probes=(probe,), mlp_kwargs=mlp,
            knn_k=aia.knn_k, n_bootstrap=aia.bootstrap, seed=cfg.seed,
        )  # fmt: skip
    times = {}
    for name, job in jobs.items():
        with stopwatch(torch.device("cpu")) as t:
            job()
        times[name] = t[0]
    return times


def attacks(bench: Bench) -> dict[str, Any]:
    """The MIA + AIA suite on cached features vs one extraction pass over the four quarters.

    Extraction (after one untimed warm-up batch) and the suite alternate for ``bench.rounds``
    rounds, with one more extraction at the end, so both sides see the same phases of a noisy
    machine; the ratio is the median suite time over the median extraction time. The suite runs
    with the config's epochs and bootstrap. Label-only attacks are reported per 1,000 samples.
    """
    model = classifier(bench)
    dev = features_device()
    with torch.no_grad():
        model(bench.pool.images[: bench.cfg.data.eval_batch_size].to(dev))
    extraction: list[float] = []
    suites: list[dict[str, float]] = []
    for _ in range(max(1, bench.rounds)):
        with stopwatch(dev) as t:
            quarters = extract_quarters(bench, model)
        extraction.append(t[0])
        suites.append(attack_suite(bench, quarters))
    extraction += timed(lambda: extract_quarters(bench, model), dev, repeats=1, warmup=0)
    totals = [sum(suite.values()) for suite in suites]
    return {
        "ratio": median(totals) / median(extraction),
        "suite_s": median(totals),
        "extraction_s": median(extraction),
        "extracted_images": 4 * len(bench.splits.target_train),
        "suite_parts_s": {k: median([suite[k] for suite in suites]) for k in suites[0]},
        "rounds": len(suites),
        "nn_epochs": int(bench.cfg.mia.nn_epochs),
        "mlp_epochs": int(bench.cfg.aia.mlp_epochs),
        "bootstrap": int(bench.cfg.mia.bootstrap),
        **label_only(bench, model),
    }


def label_only(bench: Bench, model: SupervisedClassifier) -> dict[str, Any]:
    """Seconds per 1,000 samples of the boundary (HopSkipJump) and augmentation attacks.

    Labels are the model's own predictions, so every sample is correctly classified and gets
    the full boundary search: the worst case per sample (misclassified ones cost nothing).
    """
    mia, dev = bench.cfg.mia, features_device()
    members = torch.as_tensor(bench.splits.target_train)
    n_hsj = min(int(mia.label_only_samples), len(members))
    n_aug = min(int(mia.aug_samples or len(members)), len(members))
    images = as_float(bench.pool.images[members[: max(n_hsj, n_aug)]]).to(dev)
    with torch.no_grad():
        labels = model(images).argmax(1)
        with stopwatch(dev) as t_hsj:
            boundary_distance(
                model, images[:n_hsj], labels[:n_hsj], num_iterations=mia.hsj_iterations,
                grad_samples=mia.hsj_grad_samples, tolerance=mia.hsj_tolerance,
                abs_tolerance=mia.hsj_abs_tolerance, seed=bench.cfg.seed,
            )  # fmt: skip
        with stopwatch(dev) as t_aug:
            augmentation_robustness(
                model, images[:n_aug], labels[:n_aug], n_aug=mia.aug_n,
                max_shift=mia.aug_max_shift, seed=bench.cfg.seed,
            )  # fmt: skip
    return {
        "label_only_s_per_1000": t_hsj[0] * 1000 / n_hsj,
        "label_only_samples": n_hsj,
        "hsj_iterations": int(mia.hsj_iterations),
        "augmentation_attack_s_per_1000": t_aug[0] * 1000 / n_aug,
        "augmentation_attack_samples": n_aug,
    }
