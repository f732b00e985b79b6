"""The README's demo block is written from results.json: provenance, utilities, verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_talos.errors import UserError
from lightning_talos.report.readme import end, start, write_readme


def _results() -> dict:
    utility = {"train_acc": 0.99, "test_acc": 0.61, "gap": 0.38, "clean_test_acc": 0.74}
    return {
        "supervised": {"utility": utility, "mia": None, "aia": None},
        "meta": {
            "git_commit": "abcdef1234567",
            "machine": {"cpu": "Test CPU 9000", "cores": 2, "cpu_capability": "AVX2"},
            "precision": {"precision": "32-true", "reason": "no native bf16"},
            "seeds": [0],
            "wall_time_s": {"pretrain-target": 60.0, "mia-supervised": 30.0},
        },
        "claims": {},
    }


def test_block_replaced_and_rest_kept(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{start('demo')}\nold numbers\n{end('demo')}\noutro\n")
    write_readme(readme, _results(), "demo")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    assert "old numbers" not in text
    assert "Test CPU 9000" in text and "`abcdef1234`" in text and "32-true" in text
    assert "1.5 min" in text  # 90 s of stage time
    assert "| Supervised | 0.990 | 0.610 | 0.380 | – | 0.740 |" in text
    write_readme(readme, _results(), "demo")  # idempotent
    assert readme.read_text() == text


def test_missing_markers_is_one_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no block here\n")
    with pytest.raises(UserError, match="no block for run demo"):
        write_readme(readme, _results(), "demo")
    assert readme.read_text() == "no block here\n"
