"""``lightning-talos <command> [key=value ...]``: compose the config, run one command.

Training and attack commands come from the stage registry (``stages/registry.py``); every
command answers ``--help`` and ``--print-config``. Bad input ends in one ``error:`` line and
exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lightning_talos.errors import UserError
from lightning_talos.interrupts import SignalInterruptError, cli_signals, resume_line

USAGE = """usage: lightning-talos COMMAND [--help|--print-config] [experiment=NAME] [key=value ...]

commands:
{commands}

`lightning-talos COMMAND --help` says what a command reads and writes;
`lightning-talos COMMAND --print-config [key=value ...]` prints the config it would run with.
"""


@dataclass(frozen=True)
class Command:
    """One CLI command: what it does (one line), its help text, and how it runs."""

    summary: str
    run: Callable[[list[str]], None]
    help: Callable[[], str]
    composes: bool = True  # takes key=value overrides (``--print-config`` applies)


def _quiet() -> None:
    """Keep the console to our lines and Lightning's progress bars."""
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*treespec.*")
    # the linear stage's encoder is frozen in eval mode on purpose
    warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode at the start of training.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def _compose(args: Sequence[str]):  # noqa: ANN202 (DictConfig; imported lazily for a fast --help)
    from lightning_talos.config.load import compose
    from lightning_talos.stages.registry import register_variants

    cfg = compose(args)
    register_variants(cfg)  # e.g. one DP-SGD method per dp.epsilon value
    return cfg


def cmd_data(args: list[str]) -> None:
    from lightning_talos.data.registry import describe, load_pool, resolved_labels
    from lightning_talos.data.splits import member_split

    cfg = _compose(args)
    pool = load_pool(cfg.data, seed=cfg.seed)
    splits = member_split(len(pool), seed=cfg.seed, pool_size=cfg.data.pool_size)
    task, attribute = resolved_labels(cfg.data)
    info = {
        "dataset": str(cfg.data.name),
        "task_label": task,
        "sensitive_attribute": attribute,
        **describe(pool),
        "splits": splits.sizes(),
        "split_hash": splits.hash,
    }
    print(json.dumps(info))


def _train(command: str) -> Callable[[list[str]], None]:
    def run(args: list[str]) -> None:
        from lightning_talos.runs.context import RunContext
        from lightning_talos.stages.registry import stage_for_command
        from lightning_talos.stages.training import run_train_stage

        cfg = _compose(args)
        stage = stage_for_command(cfg, command)
        ctx = RunContext(cfg)
        manifest = run_train_stage(ctx, stage, str(cfg.role))
        path = ctx.stage_dir(stage.name, str(cfg.role)) / "metrics.json"
        print(f"[{stage.name}-{cfg.role}] {manifest['status']}: {path}")

    return run


def _attack(name: str) -> Callable[[list[str]], None]:
    def run(args: list[str]) -> None:
        from lightning_talos.runs.context import RunContext
        from lightning_talos.stages.attacking import run_attack_stage
        from lightning_talos.stages.registry import attack_stage, method

        cfg = _compose(args)
        print(run_attack_stage(RunContext(cfg), attack_stage(name), method(str(cfg.method))))

    return run


def cmd_audit(args: list[str]) -> None:
    dry_run = "--dry-run" in args
    overrides = [a for a in args if a != "--dry-run"]
    cfg = _compose(overrides)
    if str(cfg.launcher.name) == "local" and not dry_run:
        from lightning_talos.orchestration.launchers.forkserver import warm_up

        warm_up()  # the fork server imports torch and Lightning while this goes on
    if str(cfg.launcher.name) != "none":
        from lightning_talos.orchestration.launchers.run import launch

        launch(cfg, overrides, dry_run=dry_run)  # slurm: the last job writes results.json
        return
    from lightning_talos.orchestration.audit import run_audit

    run_audit(cfg, dry_run=dry_run)


def cmd_status(args: list[str]) -> None:
    from lightning_talos.orchestration.launchers.status import status_lines

    print("\n".join(status_lines(_compose(args))))


def cmd_report(args: list[str]) -> None:
    from lightning_talos.report.readme import write_readme
    from lightning_talos.report.report import load_results, write_report
    from lightning_talos.runs.settings import run_root

    readme = [a.split("=", 1)[1] for a in args if a.startswith("--readme=")]
    cfg = _compose([a for a in args if not a.startswith("--readme=")])
    root = run_root(cfg)
    print(write_report(root))
    if readme:
        print(write_readme(Path(readme[0]), load_results(root), str(cfg.run.name)))


def cmd_audit_encoder(args: list[str]) -> None:
    from lightning_talos.analysis.names import PAPER_ATTACKS
    from lightning_talos.report.external import write_external_report
    from lightning_talos.runs.lock import run_lock
    from lightning_talos.runs.settings import run_root
    from lightning_talos.stages.external import STAGE, prepare_external, run_external
    from lightning_talos.stages.wandb_log import log_attack

    MIA, AIA = PAPER_ATTACKS
    cfg = _compose(args)
    plan = prepare_external(cfg)  # every input checked before anything is written
    with run_lock(run_root(cfg), wait=False):
        results = run_external(plan)
        report, png = write_external_report(plan.out_dir, results)
        ext = results["external"]
        summary = {"attacks": ext[MIA], AIA: ext[AIA], "utility": ext["utility"]}
        log_attack(cfg, run_root(cfg), STAGE, summary, image=png)
    auc = results["external"][MIA]["encoder_similarity"]
    print(f"[{STAGE}] membership AUC {auc['auc']:.3f} {auc['ci95']['auc']}: {report}")


def cmd_readme(args: list[str]) -> None:
    from lightning_talos.bench.demo import refresh_reference
    from lightning_talos.report.readme_blocks import write_blocks

    print(refresh_reference(Path.cwd()))
    readme = [a.split("=", 1)[1] for a in args if a.startswith("--readme=")]
    written = write_blocks(Path(readme[0] if readme else "README.md"), Path.cwd())
    print("rewrote: " + (", ".join(written) or "nothing (no runs found)"))


def cmd_sweep(args: list[str]) -> None:
    from lightning_talos.orchestration.sweep import run_sweep

    if not args or "=" in args[0]:
        raise UserError("usage: lightning-talos sweep NAME [key=value ...]")
    run_sweep(args[0], args[1:], cmd_audit)


def cmd_compare(args: list[str]) -> None:
    from lightning_talos.report.report import compare

    if not args:
        raise UserError("usage: lightning-talos compare RUN_DIR [RUN_DIR ...]")
    print(compare([Path(a) for a in args]))


def cmd_bench(args: list[str]) -> None:
    from lightning_talos.bench.run import main as bench_main

    bench_main(list(args))


def _train_help(command: str) -> Callable[[], str]:
    def text() -> str:
        from lightning_talos.stages.registry import REGISTRY

        blocks = []
        for s in (s for s in REGISTRY.train.values() if (s.command or s.name) == command):
            select = f" ({s.extra})" if s.extra else ""
            upstream = s.reads or "no other stage"
            blocks.append(
                f"lightning-talos {command}{select} role=target|shadow [key=value ...]\n"
                f"  {s.summary}.\n"
                f"  reads: the dataset (data.*), its split (<run>/splits.json), {upstream}\n"
                f"  config sections: seed, data, {', '.join(s.sections)}"
                f" (epochs: {s.epochs_section}.max_epochs, else trainer.max_epochs)\n"
                f"  writes: <run.dir>/<run.name>/{s.name}-ROLE/ (config.yaml, manifest.json,\n"
                f"          checkpoints/last.ckpt, metrics.json); re-running resumes or skips it"
            )
        return "\n\n".join(blocks)

    return text


def _attack_help(name: str) -> Callable[[], str]:
    def text() -> str:
        from lightning_talos.stages.registry import REGISTRY, attack_stage

        s = attack_stage(name)
        methods = "|".join(REGISTRY.methods)
        roles = ",".join(s.roles)
        models = ", ".join(
            f"{m.model_stage}-{{{roles}}} (method={m.name})" for m in REGISTRY.methods.values()
        )
        return (
            f"lightning-talos {name} method={methods} [key=value ...]\n"
            f"  {s.summary}.\n"
            f"  reads: {models}\n"
            f"  config sections: seed, data, {', '.join(s.sections)}\n"
            f"  writes: <run.dir>/<run.name>/{name}-METHOD/{s.output} (+ manifest.json)"
        )

    return text


def _fixed(text: str) -> Callable[[], str]:
    return lambda: text


def commands() -> dict[str, Command]:
    """Every command: the registry's training and attack stages, then the rest."""
    from lightning_talos.stages.registry import REGISTRY, train_commands

    out: dict[str, Command] = {
        "data": Command(
            "print the dataset, its split sizes and hash as JSON",
            cmd_data,
            _fixed("lightning-talos data [key=value ...]\n  prints the dataset as JSON"),
        )
    }
    for command in train_commands():
        summary = next(s.summary for s in REGISTRY.train.values() if s.command == command or
                       (not s.command and s.name == command))  # fmt: skip
        out[command] = Command(summary, _train(command), _train_help(command))
    for name, stage in REGISTRY.attack.items():
        out[name] = Command(stage.summary, _attack(name), _attack_help(name))
    out["references"] = _references_command()
    out["audit"] = Command(
        "every stage for one dataset, then results.json and report.md",
        cmd_audit,
        _fixed(
            "lightning-talos audit [--dry-run] [methods=[...]] [seeds=[...]] [key=value ...]\n"
            "  trains and attacks every audited method as a dependency graph; finished stages\n"
            "  are skipped, interrupted ones resume; writes <run>/results.json and report.md\n"
            "  launcher=local [launcher.parallel=N]: stages as N processes at once here;\n"
            "  launcher=slurm: one SLURM job per stage (submitit), recorded in <run>/jobs.json;\n"
            "  --dry-run lists the jobs, their dependencies, resources and GPU-hours"
        ),
    )
    out["status"] = Command(
        "each stage of a run's audit graph: done, running, queued, failed, not started",
        cmd_status,
        _fixed(
            "lightning-talos status run.name=NAME [experiment=... key=value ...]\n"
            "  the audit's settings name the graph; prints each stage (done / running with job,\n"
            "  node, elapsed / queued / waiting on upstream / failed with its log's last lines /\n"
            "  cancelled / not started) and whether results.json is up to date"
        ),
    )
    out["audit-encoder"] = Command(
        "privacy audit of an encoder checkpoint trained elsewhere (lightly, timm, ...)",
        cmd_audit_encoder,
        _fixed(
            "lightning-talos audit-encoder encoder.checkpoint=PATH encoder.members=LIST\n"
            "    encoder.nonmembers=LIST [encoder.format=auto|torchvision|timm|lightly|\n"
            "    solo_learn|lightning|state_dict] [encoder.arch=resnet18]\n"
            "    [encoder.shadow=PATH ...] [data...]\n"
            "  LIST: split:train, split:test or a text file of pool indices or file names.\n"
            "  measures membership (EncoderMI view similarity: AUC, TPR at 1%/0.1% FPR), the\n"
            "  attribute probes and a linear probe's task accuracy on the embeddings\n"
            "  writes <run.dir>/<run.name>/audit-encoder/{results.json,report.md,roc.png}"
        ),
    )
    out["report"] = Command(
        "report.md and figures from a run's results.json",
        cmd_report,
        _fixed(
            "lightning-talos report [--readme=README.md] [key=value ...]\n"
            "  writes <run>/report.md and figures; --readme also writes the run's table,\n"
            "  verdicts, commit and machine into the README's demo block"
        ),
    )
    out["readme"] = Command(
        "rewrite every numbers table of README.md from its named run",
        cmd_readme,
        _fixed(
            "lightning-talos readme [--readme=README.md]\n"
            "  rewrites each generated block (demo, talos-settings, refs, defences, bench) whose\n"
            "  run exists under ./runs (or ./bench.json); the others are kept"
        ),
        composes=False,
    )
    out["sweep"] = Command(
        "one audit per setting of configs/sweeps/NAME.yaml, runs in one folder",
        cmd_sweep,
        _fixed(
            "lightning-talos sweep NAME [key=value ...]\n"
            "  runs configs/sweeps/NAME.yaml: its base overrides + each setting's, one audit each"
        ),
        composes=False,
    )
    out["compare"] = Command(
        "headline numbers of several runs side by side",
        cmd_compare,
        _fixed("lightning-talos compare RUN_DIR [RUN_DIR ...]"),
        composes=False,
    )
    out["bench"] = Command(
        "throughput ratios (bench.json)",
        cmd_bench,
        _fixed("lightning-talos bench [key=value ...]\n  writes bench.json"),
    )
    return out


def _references_command() -> Command:
    from lightning_talos.stages import references

    def run(args: list[str]) -> None:
        only = [a.split("=", 1)[1] for a in args if a.startswith("--only=")]
        if only and not only[-1].isdigit():
            raise UserError(f"--only takes a reference number, got '{only[-1]}'")
        cfg = _compose([a for a in args if not a.startswith("--only=")])
        references.cmd_references(cfg, int(only[-1]) if only else None)

    return Command(references.SUMMARY, run, _fixed(references.HELP))


def usage(table: dict[str, Command]) -> str:
    lines = "\n".join(f"  {name:13s} {c.summary}" for name, c in table.items())
    return USAGE.format(commands=lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from lightning_talos.threads import configure_cpu_threads

    configure_cpu_threads()  # before anything imports torch: libgomp reads it once, at load
    argv = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(table))
        return 0
    command, args = argv[0], argv[1:]
    if command not in table:
        print(f"error: unknown command '{command}'; valid: {', '.join(table)}", file=sys.stderr)
        return 2
    _quiet()
    try:
        if "--help" in args or "-h" in args:
            print(table[command].help())
        elif "--print-config" in args and table[command].composes:
            from omegaconf import OmegaConf

            rest = [a for a in args if a not in ("--print-config", "--dry-run")]
            print(OmegaConf.to_yaml(_compose(rest), resolve=True), end="")
        else:
            from lightning_talos.runs.lock import command_lock
            from lightning_talos.threads import start_cpu_share

            start_cpu_share()  # this run's fair share of the cores, re-checked while training
            with command_lock(command, args), cli_signals():
                table[command].run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SignalInterruptError as err:  # SIGTERM, or Ctrl-C in training: checkpoint saved
        print(resume_line(err, argv), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(resume_line(None, argv), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
