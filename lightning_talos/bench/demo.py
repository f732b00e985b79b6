"""``demo_predicted_s``: how long ``make demo`` will take on this machine, before running it.

The bench times the demo's heaviest kind of work, a SimCLR training step of the demo's model at
the demo's batch, image size and precision, with every core the demo would use (the CLI gives a
run alone all of them). A reference demo run, made on a known machine at a known commit
(:data:`REFERENCE`, written by ``make readme`` from ``runs/demo`` and the ``bench.json`` of the
same commit and machine), scales by the ratio of the two throughputs::

    predicted = reference stage wall time x reference images/s / this machine's images/s

It assumes the demo's other work (evaluation, attacks, set-up) scales like its training; the
reference run's per-stage profile (README "The demo") shows how large that other work is.
Without a reference the throughput is still reported and the prediction is skipped.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from lightning_talos.bench.context import Bench
from lightning_talos.bench.timing import median, now, periods
from lightning_talos.bench.training import PlainStepper, images_per_s
from lightning_talos.errors import UserError
from lightning_talos.threads import available_cores

#: The reference demo run the prediction scales (see :func:`write_reference`).
REFERENCE = Path(__file__).with_name("demo_reference.json")


@contextmanager
def _threads(count: int):  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def demo_images_per_s(bench: Bench, threads: int) -> tuple[float, int]:
    """SimCLR training throughput of the bench's model with ``threads`` intra-op threads.

    Returns:
        (images per second from the median step time, timed steps).
    """
    n = bench.warmup + bench.steps * bench.rounds
    batches = bench.batches([bench.batch_size] * 4)
    plain = PlainStepper(
        bench, bench.simclr(), bench.loader(batches, length=n + 1), bench.precision
    )
    stamps = []
    with _threads(threads):
        while plain.step() is not None:
            stamps.append(now(bench.device))
    steps = periods(stamps, bench.warmup)
    return images_per_s(bench.batch_size, median(steps)), len(steps)


def load_reference(path: Path = REFERENCE) -> dict[str, Any] | None:
    """The reference demo run, or None when there is none.

    Raises:
        UserError: a reference file that is not the JSON :func:`write_reference` writes.
    """
    if not path.is_file():
        return None
    try:
        reference = json.loads(path.read_text())
        float(reference["demo_s"]), float(reference["images_per_s"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a demo reference ({err}); `make readme` rewrites it") from err
    return reference


def predict(reference: dict[str, Any] | None, images_per_s: float) -> float | None:
    """Predicted demo seconds at ``images_per_s`` (None without a reference or a throughput)."""
    if reference is None or not images_per_s > 0:
        return None
    return float(reference["demo_s"]) * float(reference["images_per_s"]) / images_per_s


def demo_time(bench: Bench) -> dict[str, Any]:
    """The bench headline: the demo's predicted wall time here (``ratio``: seconds)."""
    threads = available_cores() if bench.device.type == "cpu" else torch.get_num_threads()
    ips, steps = demo_images_per_s(bench, threads)
    reference = load_reference()
    predicted = predict(reference, ips)
    return {
        "ratio": float("nan") if predicted is None else predicted,
        "images_per_s": ips,
        "demo_threads": threads,
        "timed_steps": steps,
        "reference": reference,
        "formula": "reference demo_s x reference images_per_s / images_per_s",
    }


def write_reference(
    results: dict[str, Any], report: dict[str, Any], path: Path = REFERENCE
) -> bool:
    """Write the reference from a demo run's results and a bench report of the same commit.

    Written only when both come from one commit, one kind of CPU and one precision, and the
    demo ran one seed (otherwise the two could not be compared); returns whether it was.
    """
    meta = results.get("meta") or {}
    measured = ((report.get("details") or {}).get("demo_predicted_s") or {}).get("images_per_s")
    precision = meta.get("precision") or {}
    precision = precision.get("precision") if isinstance(precision, dict) else precision
    same = (
        measured
        and meta.get("git_commit")
        and meta.get("git_commit") == report.get("git_commit")
        and (meta.get("machine") or {}).get("cpu") == (report.get("machine") or {}).get("cpu")
        and precision == (report.get("config") or {}).get("precision")
        and len(meta.get("seeds") or []) == 1
    )
    if not same:
        return False
    reference = {
        "demo_s": round(sum(float(v) for v in (meta.get("wall_time_s") or {}).values()), 1),
        "images_per_s": round(float(measured), 1),
        "git_commit": meta["git_commit"],
        "cpu": (meta.get("machine") or {}).get("cpu"),
        "cores": (meta.get("machine") or {}).get("cores"),
        "precision": precision,
    }
    path.write_text(json.dumps(reference, indent=2) + "\n")
    return True


def repredict(report: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any]:
    """``report`` (a ``bench.json``) with ``demo_predicted_s`` recomputed from its measured
    throughput and ``reference``: the prediction is arithmetic on the measurement, so a new
    reference needs no new measurement."""
    details = (report.get("details") or {}).get("demo_predicted_s")
    if not details:
        return report
    predicted = predict(reference, float(details["images_per_s"]))
    details["reference"] = reference
    details["ratio"] = float("nan") if predicted is None else predicted
    report["demo_predicted_s"] = predicted
    target = (report.get("targets") or {}).get("demo_predicted_s")
    if target is not None:
        target["met"] = None if predicted is None else predicted <= target["target"]
    return report


def refresh_reference(root: Path, path: Path = REFERENCE) -> str:
    """Rewrite the reference from ``root``'s ``runs/demo`` and ``bench.json`` when they match
    (see :func:`write_reference`); says what it did in one line."""
    results, report = root / "runs" / "demo" / "results.json", root / "bench.json"
    if not (results.is_file() and report.is_file()):
        return f"demo reference kept ({path.name}): needs runs/demo and bench.json"
    try:
        demo, bench = json.loads(results.read_text()), json.loads(report.read_text())
    except ValueError as err:
        raise UserError(f"unreadable {results} or {report}: {err}") from err
    if write_reference(demo, bench, path):
        report.write_text(json.dumps(repredict(bench, load_reference(path)), indent=2) + "\n")
        return (
            f"demo reference rewritten from runs/demo and bench.json (prediction updated): {path}"
        )
    return (
        f"demo reference kept ({path.name}): runs/demo and bench.json are not from one commit, "
        "CPU and precision with one seed"
    )
