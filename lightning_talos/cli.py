"""``lightning-talos <command> [key=value ...]``: compose the config, run one command.

Every command is a small function below; bad input ends in one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from lightning_talos.errors import UserError

USAGE = """usage: lightning-talos COMMAND [--dry-run] [key=value ...] [experiment=NAME]

commands:
  data        print the dataset, its split sizes and hash as JSON
  pretrain    SimCLR encoder for one role (target or shadow)
  talos       Talos encoder (SimCLR + gradient-reversal adversary) for one role
  linear      linear layer on a frozen encoder (method=contrastive|talos)
  supervised  the supervised baseline for one role
  mia         membership inference on method=supervised|contrastive|talos
  aia         attribute inference on method=supervised|contrastive|talos
  audit       every stage of the paper for one dataset, then results.json and report.md
  report      report.md and figures from a run's results.json
  compare     lightning-talos compare RUN_DIR [RUN_DIR ...]
  bench       throughput ratios (bench.json)
"""


def _quiet() -> None:
    """Keep the console to our lines and Lightning's progress bars."""
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*treespec.*")
    # the linear stage's encoder is frozen in eval mode on purpose
    warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode at the start of training.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def cmd_data(args: Sequence[str]) -> None:
    from lightning_talos.config.load import compose
    from lightning_talos.data.registry import describe, load_pool, resolved_labels
    from lightning_talos.data.splits import member_split

    cfg = compose(args)
    pool = load_pool(cfg.data, seed=cfg.seed)
    splits = member_split(len(pool), seed=cfg.seed, pool_size=cfg.data.pool_size)
    task, attribute = resolved_labels(cfg.data)
    info = {
        "dataset": cfg.data.name,
        "task_label": task,
        "sensitive_attribute": attribute,
        **describe(pool),
        "splits": splits.sizes(),
        "split_hash": splits.hash,
    }
    print(json.dumps(info))


def _train(stage: str) -> Callable[[Sequence[str]], None]:
    def run(args: Sequence[str]) -> None:
        from lightning_talos.config.load import compose
        from lightning_talos.pipeline.context import RunContext
        from lightning_talos.pipeline.training import train_stage

        cfg = compose(args)
        name = stage
        if stage == "linear" and cfg.method == "talos":
            name = "talos_linear"
        elif stage == "linear" and cfg.method != "contrastive":
            raise UserError("linear trains on a contrastive encoder: method=contrastive|talos")
        manifest = train_stage(RunContext(cfg), name, cfg.role)
        path = RunContext(cfg).stage_dir(name, cfg.role) / "metrics.json"
        print(f"[{name}-{cfg.role}] {manifest['status']}: {path}")

    return run


def cmd_mia(args: Sequence[str]) -> None:
    from lightning_talos.config.load import compose
    from lightning_talos.pipeline.attack import run_mia

    print(run_mia(compose(args)))


def cmd_aia(args: Sequence[str]) -> None:
    from lightning_talos.config.load import compose
    from lightning_talos.pipeline.attack import run_aia

    print(run_aia(compose(args)))


def cmd_audit(args: Sequence[str]) -> None:
    from lightning_talos.config.load import compose
    from lightning_talos.pipeline.audit import run_audit

    dry_run = "--dry-run" in args
    run_audit(compose([a for a in args if a != "--dry-run"]), dry_run=dry_run)


def cmd_report(args: Sequence[str]) -> None:
    from lightning_talos.config.load import compose
    from lightning_talos.pipeline.rundir import run_root
    from lightning_talos.report.report import write_report

    print(write_report(run_root(compose(args))))


def cmd_compare(args: Sequence[str]) -> None:
    from lightning_talos.report.report import compare

    if not args:
        raise UserError("usage: lightning-talos compare RUN_DIR [RUN_DIR ...]")
    print(compare([Path(a) for a in args]))


def cmd_bench(args: Sequence[str]) -> None:
    from lightning_talos.bench.run import main as bench_main

    bench_main(list(args))


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "data": cmd_data,
    "pretrain": _train("pretrain"),
    "talos": _train("talos"),
    "linear": _train("linear"),
    "supervised": _train("supervised"),
    "mia": cmd_mia,
    "aia": cmd_aia,
    "audit": cmd_audit,
    "report": cmd_report,
    "compare": cmd_compare,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from lightning_talos.threads import configure_cpu_threads

    configure_cpu_threads()  # before anything imports torch: libgomp reads it once, at load
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    _quiet()
    try:
        from lightning_talos.pipeline.lock import command_lock

        with command_lock(command, args):
            COMMANDS[command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
