"""Every numbers table of the README is written by code between markers, from named runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lightning_talos.analysis.claims import judge_claims
from lightning_talos.cli import main
from lightning_talos.errors import UserError
from lightning_talos.orchestration.sweep import load_sweep, run_sweep, slug, sweep_path
from lightning_talos.report.readme_blocks import (
    BLOCKS,
    block_markers,
    pending,
    tables_outside_blocks,
    write_blocks,
)
from tests.unit.test_claims import model, results

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_has_no_numbers_table_outside_its_blocks() -> None:
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    outside = tables_outside_blocks(text)
    assert outside == [], "hand-typed numbers tables:\n" + "\n".join(lines[n - 1] for n in outside)
    for block in BLOCKS:  # every generated block has its place
        opening, closing = block_markers(block)
        assert text.count(opening) == 1 and text.count(closing) == 1, block.name


def test_a_typed_table_is_found_and_a_generated_one_is_not() -> None:
    text = "\n".join(
        [
            "| command | what |",  # no decimal numbers: not a numbers table
            "| `make demo` | the demo |",
            "<!-- results:x:start (written by `make readme` from runs/x: do not edit) -->",
            "| model | acc |",
            "| Talos | 0.749 |",
            "<!-- results:x:end -->",
            "| LEACE | 0.735 |",
        ]
    )
    assert tables_outside_blocks(text) == [7]


def _readme(tmp_path: Path) -> Path:
    parts = ["# title", "intro"]
    for block in BLOCKS:
        opening, closing = block_markers(block)
        parts += [f"## {block.name}", opening, closing, "after"]
    path = tmp_path / "README.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(payload))


def _defences() -> dict[str, Any]:
    r = results()
    dp = model({"nn": 0.52, "metric_entropy": 0.51}, {"mlp": 0.9, "knn": 0.88}, 0.55)
    dp["defence"] = {"defence": "dp_sgd", "epsilon": None, "delta": 2.5e-4, "noise_multiplier": 0.0,
                     "max_grad_norm": 1.0, "sample_rate": 0.256, "steps": 117,
                     "target_epsilon": None}  # fmt: skip
    r["dp_supervised"] = dp
    r["meta"].update(git_commit="feedface0123", machine={"cpu": "Test CPU", "cores": 2},
                     precision={"precision": "32-true"})  # fmt: skip
    r["claims"] = judge_claims(r)
    return r


def test_blocks_are_written_from_their_runs_and_kept_or_pending_without(tmp_path: Path) -> None:
    readme = _readme(tmp_path)
    _write(tmp_path / "runs" / "defences", _defences())
    target = {"target": 0.97, "kind": "min", "met": True}
    bench = {"git_commit": "0123456789abc", "wall_s": 130.0,
             "machine": {"processor": "x86_64", "cpu_count": 2, "torch": "2.x"},
             "config": {"precision": "bf16-mixed"},
             "lightning_vs_plain": 0.99, "targets": {"lightning_vs_plain": target}}  # fmt: skip
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    written = write_blocks(readme, tmp_path)
    assert written == ["defences", "bench"]
    text = readme.read_text()
    command = "lightning-talos audit experiment=defences launcher=local launcher.parallel=2"
    assert "`feedface01`" in text and f"Command: `{command}`" in text
    assert "| DP-SGD | " in text and "inf (no noise)" in text  # clipping only: epsilon infinity
    assert "| `lightning_vs_plain` | 0.99 | >= 0.97 | yes |" in text
    assert "`0123456789`" in text and "bf16-mixed" in text
    demo = next(b for b in BLOCKS if b.name == "demo")
    assert pending(demo) in text  # no runs/demo: the command that makes it
    assert tables_outside_blocks(text) == []
    assert write_blocks(readme, tmp_path) == written and readme.read_text() == text  # idempotent
    (tmp_path / "bench.json").unlink()  # a block written before is kept when its source is gone
    write_blocks(readme, tmp_path)
    assert "| `lightning_vs_plain` | 0.99 |" in readme.read_text()


def test_a_readme_without_a_block_is_one_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no blocks\n")
    with pytest.raises(UserError, match="has no block demo"):
        write_blocks(readme, tmp_path)
    assert readme.read_text() == "no blocks\n"


def test_sweep_runs_one_audit_per_setting_in_one_folder(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_path("talos_settings"))
    assert sweep["settings"][0] == {"label": "the defaults (the demo)",
                                    "run": "the-defaults-the-demo", "overrides": []}  # fmt: skip
    folder = tmp_path / "configs" / "sweeps"
    folder.mkdir(parents=True)
    (folder / "s.yaml").write_text(
        "run_dir: " + str(tmp_path / "runs" / "s") + "\nbase: [experiment=demo]\nsettings:\n"
        "  - {label: 'lambda 4', overrides: [talos.lambda=4]}\n  - {label: base}\n"
    )
    calls: list[list[str]] = []
    import os

    os.environ["LIGHTNING_TALOS_CONFIGS"] = str(tmp_path / "configs")
    try:
        run_sweep("s", ["seed=1"], calls.append)
        with pytest.raises(UserError, match="no sweep 'missing'"):
            sweep_path("missing")
    finally:
        del os.environ["LIGHTNING_TALOS_CONFIGS"]
    run_dir = tmp_path / "runs" / "s"
    assert calls == [
        ["experiment=demo", "talos.lambda=4", "seed=1", f"run.dir={run_dir}", "run.name=lambda-4"],
        ["experiment=demo", "seed=1", f"run.dir={run_dir}", "run.name=base"],
    ]
    listing = json.loads((run_dir / "sweep.json").read_text())
    assert [s["run"] for s in listing["settings"]] == ["lambda-4", "base"]
    assert slug("Lambda 4, 5 steps (lr 1e-3)") == "lambda-4-5-steps-lr-1e-3"


def test_sweep_table_reads_each_setting_s_run(tmp_path: Path) -> None:
    readme = _readme(tmp_path)
    run_dir = tmp_path / "runs" / "talos-settings"
    settings = [
        {"label": "the defaults", "run": "the-defaults", "overrides": []},
        {"label": "lambda 1", "run": "lambda-1", "overrides": ["talos.lambda=1"]},
    ]
    run_dir.mkdir(parents=True)
    (run_dir / "sweep.json").write_text(json.dumps({"settings": settings}))
    _write(run_dir / "the-defaults", results())
    write_blocks(readme, tmp_path)
    text = readme.read_text()
    assert "| the defaults | – | – | 0.600 | 0.620 | 0.800 | 0.800 |" in text  # no logistic probe
    assert "| lambda 1 | `talos.lambda=1` | not run |" in text


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep"]) == 2
    assert "usage: lightning-talos sweep NAME" in capsys.readouterr().err
