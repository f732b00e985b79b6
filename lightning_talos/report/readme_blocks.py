"""Every numbers table of the README, written by code from named runs (``make readme``).

Each block sits between ``start(name)`` and ``end(name)`` markers (:mod:`.readme`) and opens
with its provenance: the commit, CPU, precision and command that produced its source. A block's
source is a run folder (``runs/<name>``, whose ``results.json`` it reads), a sweep folder
(``runs/<sweep>/``, one run per setting, listed in its ``sweep.json``) or ``bench.json``.
:func:`write_blocks` rewrites every block whose source exists and leaves the others as they are
(a block never written says which command makes its source). :func:`tables_outside_blocks`
finds numbers tables a person typed in: the README test fails on any.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_talos.errors import UserError
from lightning_talos.report.frontier import frontier_markdown
from lightning_talos.report.frontier import rows as frontier_rows
from lightning_talos.report.readme import demo_body, end, provenance, start
from lightning_talos.report.report import load_results
from lightning_talos.report.stronger import stronger_table
from lightning_talos.stages.registry import PAPER_ATTACKS, PAPER_METHODS

MIA, AIA = PAPER_ATTACKS
_, CONTRASTIVE, TALOS = PAPER_METHODS
#: A table row holding a decimal number (``0.735``, ``15.5x``, ``455.1 s``): a numbers table.
_NUMBER_ROW = re.compile(r"^\s*\|.*\d\.\d")
#: Sweep settings are listed in this file of the sweep folder (``orchestration/sweep.py``).
SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Block:
    """One generated block of the README.

    Args:
        name: The marker name.
        source: Its source, relative to the repository root (a run folder or a file).
        command: The command that makes the source (shown in the block).
        render: The block's body from the source path.
    """

    name: str
    source: str
    command: str
    render: Callable[[Path, str], str]


def _demo(path: Path, command: str) -> str:
    first, *rest = demo_body(load_results(path))
    return "\n\n".join([f"{first} Command: `{command}`.", *rest])


def _defences(path: Path, command: str) -> str:
    results = load_results(path)
    rows = frontier_rows(results)
    table = frontier_markdown(rows, "frontier.png")[:-2]  # the figure stays in the run folder
    lines = [provenance(results), f"Command: `{command}`.", "", *table, "", _dp_lines(results)]
    return "\n".join(lines).rstrip()


def _dp_lines(results: dict[str, Any]) -> str:
    """What each DP-SGD model spent and trained for (its ``defence`` record)."""
    out = []
    for name, entry in results.items():
        defence = (entry or {}).get("defence") if isinstance(entry, dict) else None
        if not defence or defence.get("defence") != "dp_sgd":
            continue
        eps = defence.get("epsilon")
        out.append(
            f"- `{name}`: epsilon {'inf (no noise)' if eps is None else f'{eps:.2f}'} at delta "
            f"{defence['delta']:.1e}, noise {defence['noise_multiplier']:.3f}, clip "
            f"{defence['max_grad_norm']:g}, sampling rate {defence['sample_rate']:.3f}, "
            f"{defence.get('steps')} steps; task accuracy "
            f"{entry['utility']['test_acc']:.3f} (train {entry['utility']['train_acc']:.3f})"
        )
    return "\n".join(out)


def _refs(path: Path, command: str) -> str:
    results = load_results(path)
    times = (results.get("meta") or {}).get("wall_time_s") or {}
    refs = sum(v for k, v in times.items() if "-ref-" in k)
    attacks = sum(v for k, v in times.items() if k.startswith(("mia-", "aia-")))
    other = sum(times.values()) - refs - attacks
    lines = [
        provenance(results),
        f"Command: `{command}`. Stage wall times: target and shadow training {other:.0f} s, "
        f"references {refs:.0f} s, attack stages {attacks:.0f} s.",
        "",
        *stronger_table(results),
    ]
    return "\n".join(lines).rstrip()


def _sweep(path: Path, command: str) -> str:
    listing = path / SWEEP_FILE
    settings = json.loads(listing.read_text())["settings"]
    head = "| setting | overrides | logistic | kNN | MLP (paper) | Talos task acc | contrastive |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    first = None
    for setting in settings:
        run = path / setting["run"]
        if not (run / "results.json").is_file():
            lines.append(f"| {setting['label']} | {_overrides(setting)} | not run | | | | |")
            continue
        results = load_results(run)
        first = first or results
        talos, contrastive = results.get(TALOS) or {}, results.get(CONTRASTIVE) or {}
        probes = [_acc(talos, AIA, p) for p in ("logistic", "knn", "mlp")]
        cells = [*probes, _acc(talos, "utility", None), _acc(contrastive, "utility", None)]
        lines.append(f"| {setting['label']} | {_overrides(setting)} | " + " | ".join(cells) + " |")
    top = [provenance(first) if first else "", f"Command: `{command}`; one run per setting."]
    return "\n".join([*top, "", *lines])


def _overrides(setting: dict[str, Any]) -> str:
    return " ".join(f"`{o}`" for o in setting["overrides"]) or "–"


def _acc(entry: dict[str, Any], kind: str, name: str | None) -> str:
    node = (entry.get(kind) or {}) if name is None else (entry.get(kind) or {}).get(name) or {}
    value = node.get("test_acc" if name is None else "acc")
    return "–" if value is None else f"{value:.3f}"


def _bench(path: Path, command: str) -> str:
    report = json.loads(path.read_text())
    machine, config = report.get("machine") or {}, report.get("config") or {}
    lines = [
        f"Run by commit `{str(report.get('git_commit') or 'unknown')[:10]}` on "
        f"{machine.get('cpu') or machine.get('processor', 'an unrecorded CPU')} "
        f"({machine.get('cpu_count', '?')} "
        f"cores, torch {machine.get('torch', '?')}, precision {config.get('precision', '?')}); "
        f"total {report.get('wall_s', 0):.0f} s. Command: `{command}`.",
        "",
        "| ratio | value | target | met |",
        "|---|---|---|---|",
    ]
    for key, target in (report.get("targets") or {}).items():
        value = report.get(key)
        sign = {"min": ">= ", "max": "<= ", "info": "info "}[target["kind"]]
        met = {True: "yes", False: "no", None: "–"}[target["met"]]
        shown = "skipped" if value is None else f"{value:.2f}"
        lines.append(f"| `{key}` | {shown} | {sign}{target['target']:g} | {met} |")
    demo = (report.get("details") or {}).get("demo_predicted_s")
    if demo:
        lines += ["", _demo_prediction(demo)]
    return "\n".join(lines)


def _demo_prediction(demo: dict[str, Any]) -> str:
    """How ``demo_predicted_s`` was reached: this machine's throughput against the reference."""
    here = f"SimCLR training at {demo['images_per_s']:.0f} images/s with {demo['demo_threads']} "
    ref = demo.get("reference")
    if not ref:
        return f"`demo_predicted_s`: {here}threads; no reference demo run to scale (skipped)."
    return (
        f"`demo_predicted_s`: {here}threads here, against {ref['images_per_s']:.0f} images/s on "
        f"the reference machine ({ref.get('cpu')}, commit `{str(ref.get('git_commit'))[:10]}`), "
        f"whose demo stages took {ref['demo_s']:.0f} s."
    )


#: How ``make readme-runs`` runs the longer audits: two stages at a time, one thread each.
PARALLEL = "launcher=local launcher.parallel=2"

#: The README's generated blocks, in the order they appear; each command is the line of
#: ``make readme-runs`` that makes its source.
BLOCKS = (
    Block("demo", "runs/demo", "make demo", _demo),
    Block(
        "demo-3seeds", "runs/demo-3seeds",
        f"lightning-talos audit experiment=demo run.name=demo-3seeds seeds=[0,1,2] {PARALLEL}",
        _demo,
    ),
    Block(
        "talos-settings", "runs/talos-settings", f"lightning-talos sweep talos_settings {PARALLEL}",
        _sweep,
    ),
    Block(
        "refs", "runs/refs",
        f"lightning-talos audit experiment=synthetic_refs run.name=refs {PARALLEL}", _refs,
    ),
    Block(
        "defences", "runs/defences", f"lightning-talos audit experiment=defences {PARALLEL}",
        _defences,
    ),
    Block("bench", "bench.json", "make bench", _bench),
)  # fmt: skip


def block_markers(block: Block) -> tuple[str, str]:
    """The opening and closing markers of ``block``."""
    return start(block.name, block.source), end(block.name)


def pending(block: Block) -> str:
    """The body of a block whose source has never been made."""
    return f"No run yet: `{block.command}`, then `make readme`."


def write_blocks(readme: Path, root: Path, blocks: tuple[Block, ...] = BLOCKS) -> list[str]:
    """Rewrite every block of ``readme`` whose source exists under ``root``.

    Returns:
        The names of the blocks written.

    Raises:
        UserError: when the README or a block's markers are missing.
    """
    if not readme.is_file():
        raise UserError(f"no {readme} to write the numbers into")
    text = readme.read_text()
    written = []
    for block in blocks:
        opening, closing = block_markers(block)
        if opening not in text or closing not in text:
            raise UserError(f"{readme} has no block {block.name} ({opening} ... {closing})")
        before, rest = text.split(opening, 1)
        old, after = rest.split(closing, 1)
        source = root / block.source
        if source.exists():
            body = block.render(source, block.command)
            written.append(block.name)
        elif old.strip():
            continue  # written before from a run that is not here: kept as it was
        else:
            body = pending(block)
        text = f"{before}{opening}\n{body}\n{closing}{after}"
    readme.write_text(text)
    return written


def tables_outside_blocks(text: str) -> list[int]:
    """Line numbers (1-based) of table rows holding decimal numbers outside every block."""
    inside, found = False, []
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(r"<!-- results:[^:]+:start", line):
            inside = True
        elif re.match(r"<!-- results:[^:]+:end -->", line):
            inside = False
        elif not inside and _NUMBER_ROW.match(line):
            found.append(number)
    return found
