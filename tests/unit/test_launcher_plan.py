"""Launchers without a scheduler: the audit graph as jobs, their commands, resources,
dependencies, what a re-run keeps, the GPU-hour estimate, and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lightning_talos.cli import main
from lightning_talos.config.load import compose, hash_dict
from lightning_talos.errors import UserError
from lightning_talos.orchestration.launchers import scheduler, slurm
from lightning_talos.orchestration.launchers.estimate import estimate
from lightning_talos.orchestration.launchers.jobs import RESULTS, plan_jobs
from lightning_talos.runs.jobenv import slurm_job
from lightning_talos.runs.settings import run_root, stage_config
from lightning_talos.stages.registry import train_stage
from tests.conftest import TINY_ARGS

REFS = [
    "methods=[contrastive,leace]",
    "attacks=[metric,rmia]",
    "mia.references=2",
    "mia.rmia_a=0.3",
]


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [*TINY_ARGS, f"run.dir={tmp_path / 'runs'}", "run.name=r", *extra]


def _planned(args: list[str], *, results: bool = True):  # noqa: ANN202 (Planned)
    return plan_jobs(compose(args), args, results=results)


def test_jobs_follow_the_graph_with_one_array_per_method(tmp_path: Path) -> None:
    args = _args(tmp_path, *REFS, "launcher=slurm", "launcher.parallel=3")
    planned = _planned(args)
    jobs = {j.name: j for j in planned.jobs}
    order = [j.name for j in planned.jobs]
    for job in planned.jobs:  # each job after the jobs it waits for
        assert all(order.index(d) < order.index(job.name) for d in job.deps), job.name
    assert jobs["linear-target"].deps == ["pretrain-target"]
    assert jobs["mia-contrastive"].deps == [
        "linear-shadow", "linear-target", "references-contrastive"
    ]  # fmt: skip
    refs = jobs["references-leace"]
    assert [t.label for t in refs.tasks] == ["ref-0", "ref-1"]
    assert [t.argv[-1] for t in refs.tasks] == ["--only=0", "--only=1"]
    # pretrain-ref-<j> is shared: the leace array waits for the contrastive one that writes it
    assert refs.deps == ["references-contrastive"]
    assert set(refs.tasks[0].nodes) == {"leace-ref-0"}
    assert jobs[RESULTS].deps == order[:-1] and order[-1] == RESULTS
    assert jobs[RESULTS].tasks[0].argv[-1] == "launcher=none"
    for job in planned.jobs:
        for task in job.tasks:
            assert not any(a.startswith("launcher") for a in task.argv[1:-1]), task.argv
    assert planned.todo() == set(planned.nodes)  # nothing is done yet


def test_each_command_composes_the_audits_stage_config(tmp_path: Path) -> None:
    args = _args(tmp_path, *REFS, "launcher=local")
    planned = _planned(args, results=False)
    audit = compose(args)
    for job in planned.jobs:
        for task in job.tasks:
            overrides = [a for a in task.argv[1:] if not a.startswith("--")]
            cfg = compose(overrides)
            assert run_root(cfg) == run_root(audit).resolve()
            for key in task.nodes:
                stage = planned.nodes[key][1].stage
                assert stage_config(cfg, stage.sections) == stage_config(audit, stage.sections)


def test_seeds_give_one_graph_per_seed_folder(tmp_path: Path) -> None:
    args = _args(tmp_path, "methods=[supervised]", "seeds=[3,4]", "launcher=slurm")
    planned = _planned(args)
    names = {j.name for j in planned.jobs}
    assert {"seed-3/supervised-target", "seed-4/mia-supervised", RESULTS} <= names
    task = next(j for j in planned.jobs if j.name == "seed-4/supervised-shadow").tasks[0]
    cfg = compose(list(task.argv[1:]))
    assert cfg.seed == 4 and not cfg.seeds
    assert run_root(cfg) == (tmp_path / "runs" / "r" / "seed-4").resolve()
    assert "seeds=[3,4]" in planned.jobs[-1].tasks[0].argv


def test_done_stages_are_no_jobs(tmp_path: Path) -> None:
    args = _args(tmp_path, "methods=[contrastive]", "launcher=slurm")
    assert main(["pretrain", *args]) == 0
    planned = _planned(args)
    jobs = {j.name: j for j in planned.jobs}
    assert "pretrain-target" not in jobs and "pretrain-shadow" in jobs
    assert jobs["linear-target"].deps == []  # its upstream is done
    assert jobs["linear-shadow"].deps == ["pretrain-shadow"]


def test_resources_per_kind_ddp_tasks_signal_and_requeue(tmp_path: Path) -> None:
    args = _args(
        tmp_path, "launcher=slurm", "launcher.partition=gpu", "launcher.attack.partition=cpu",
        "launcher.train.gpus_per_node=4", "launcher.sbatch_extra=[--constraint=a100,--exclusive]",
        "trainer=ddp", "methods=[supervised]",
    )  # fmt: skip
    cfg = compose(args)
    jobs = {j.name: j for j in plan_jobs(cfg, args, results=True).jobs}
    train = slurm.resources(cfg, jobs["supervised-target"])
    assert train["partition"] == "gpu" and train["gpus_per_node"] == 4
    assert train["ntasks_per_node"] == 4  # DDP (devices=-1): one task per GPU
    extra = train["additional_parameters"]
    assert extra == {"signal": "USR1@90", "requeue": True, "constraint": "a100", "exclusive": True}
    attack = slurm.resources(cfg, jobs["mia-supervised"])
    assert attack["partition"] == "cpu" and "gpus_per_node" not in attack
    assert attack["ntasks_per_node"] == 1 and "signal" not in attack["additional_parameters"]
    two = compose([*args, "trainer.devices=2"])
    assert slurm.tasks_per_node(two, jobs["supervised-target"]) == 2
    with pytest.raises(UserError, match="expected '--name"):
        slurm.sbatch_extra(["constraint=a100"])


def test_dependency_names_an_array_by_its_array_id(tmp_path: Path) -> None:
    planned = _planned(_args(tmp_path, *REFS, "launcher=slurm"))
    job = next(j for j in planned.jobs if j.name == "mia-contrastive")
    ids = {"linear-target": "12", "linear-shadow": "13", "references-contrastive": "14"}
    assert slurm.dependency(job, ids) == "afterok:12:13:14"
    assert slurm.dependency(job, {"references-contrastive": "14_1"}) == "afterok:14"


def _record(planned, states: dict[str, str]) -> dict:  # noqa: ANN001
    jobs = {}
    for n, job in enumerate(planned.jobs):
        tasks = {t.label: {"id": f"{n}", "nodes": list(t.nodes), "log": "x"} for t in job.tasks}
        jobs[job.name] = {"job_id": str(n), "tasks": tasks}
    return {"launcher": "slurm", "jobs": jobs}


def test_rerun_keeps_live_jobs_and_resubmits_failed_ones_with_dependents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned = _planned(_args(tmp_path, "methods=[contrastive]", "launcher=slurm"))
    record = _record(planned, {})
    ids = {name: job["job_id"] for name, job in record["jobs"].items()}
    states = {ids["pretrain-target"]: scheduler.JobState("FAILED", exit_code="1:0"),
              ids["pretrain-shadow"]: scheduler.JobState("RUNNING", node="vm"),
              ids["linear-target"]: scheduler.JobState("PENDING", "DependencyNeverSatisfied"),
              ids["linear-shadow"]: scheduler.JobState("PENDING", "Dependency")}  # fmt: skip
    monkeypatch.setattr(scheduler, "query", lambda wanted: {i: states.get(i, scheduler.UNKNOWN)
                                                            for i in wanted})  # fmt: skip
    kept, submit, cancel = slurm.keep_or_resubmit(planned, record)
    assert kept == {
        "pretrain-shadow": ids["pretrain-shadow"],
        "linear-shadow": ids["linear-shadow"],
    }
    assert [j.name for j in submit][:2] == ["pretrain-target", "linear-target"]
    assert cancel == [ids["linear-target"]]  # pending for ever on the failed job


def test_slurm_job_record_from_the_environment() -> None:
    assert slurm_job({}) is None
    env = {"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "50", "SLURM_ARRAY_TASK_ID": "2",
           "SLURMD_NODENAME": "gpu7", "SLURM_RESTART_COUNT": "1"}  # fmt: skip
    assert slurm_job(env) == {"job_id": "57", "array_job_id": "50", "array_task_id": "2",
                              "node": "gpu7", "restart_count": "1", "job": "50_2"}  # fmt: skip
    assert slurm_job({"SLURM_JOB_ID": "9"})["job"] == "9"  # type: ignore[index]


def test_gpu_hours_from_a_measured_epoch_else_the_time_limit(tmp_path: Path) -> None:
    args = _args(tmp_path, "methods=[supervised]", "launcher=slurm",
                 "launcher.train.gpus_per_node=2", "launcher.train.time_min=90",
                 "supervised.max_epochs=10")  # fmt: skip
    cfg = compose(args)
    planned = plan_jobs(cfg, args, results=True)
    job = next(j for j in planned.jobs if j.name == "supervised-target")
    bound = estimate(cfg, planned, job)
    assert not bound.measured and bound.gpu_hours == pytest.approx(2 * 1.5)
    stage = train_stage("supervised")
    earlier = tmp_path / "runs" / "other" / "supervised-target"
    earlier.mkdir(parents=True)
    manifest = {"stage": "supervised", "status": "done", "epochs_completed": 4, "wall_time_s": 72.0,
                "config_hash": hash_dict(stage_config(cfg, stage.sections))}  # fmt: skip
    (earlier / "manifest.json").write_text(json.dumps(manifest))
    measured = estimate(cfg, planned, job)
    assert measured.measured and measured.gpu_hours == pytest.approx(2 * 18.0 * 10 / 3600)
    assert (
        estimate(cfg, planned, next(j for j in planned.jobs if j.kind == "attack")).gpu_hours == 0
    )


def test_missing_submitit_and_no_slurm_are_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(tmp_path, "launcher=slurm", "methods=[supervised]")
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert main(["audit", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "needs submitit" in lines[0], lines
    monkeypatch.undo()
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, squeue, sinfo
    assert main(["audit", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no SLURM reachable"), lines
    assert not (tmp_path / "runs" / "r" / "jobs.json").exists()


def test_launcher_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'launcher.parallel' must be at least 1"):
        compose(_args(tmp_path, "launcher=local", "launcher.parallel=0"))
    with pytest.raises(UserError, match="launcher.name"):
        compose(_args(tmp_path, "launcher.name=pbs"))
    with pytest.raises(UserError, match="unknown launcher 'pbs'"):
        compose(_args(tmp_path, "launcher=pbs"))


def test_status_of_a_missing_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", *_args(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no run at {tmp_path / 'runs' / 'r'}"


def test_local_failed_job_leaves_its_dependents_unstarted(tmp_path: Path) -> None:
    from lightning_talos.orchestration.launchers.jobs import TRAIN, Job, Planned, Task
    from lightning_talos.orchestration.launchers.local import run_local
    from lightning_talos.orchestration.launchers.state import read_jobs

    cfg = compose(_args(tmp_path, "launcher=local"))
    ok = ("data", "experiment=synthetic_cpu", "data.synthetic.quarter_size=16")
    jobs = [
        Job("bad", TRAIN, [Task("bad", ("data", "data.name=nope"), ())]),
        Job("after-bad", TRAIN, [Task("after-bad", ok, ())], deps=["bad"]),
        Job("other", TRAIN, [Task("other", ok, ())]),
    ]
    with pytest.raises(UserError, match=r"2 job\(s\) did not finish: bad: exit status 2"):
        run_local(cfg, Planned(jobs, {}))
    tasks = {name: job["tasks"][name] for name, job in read_jobs(run_root(cfg))["jobs"].items()}
    assert tasks["bad"]["state"] == "failed" and tasks["bad"]["returncode"] == 2
    assert "error: invalid value for 'data.name'" in Path(tasks["bad"]["log"]).read_text()
    assert tasks["after-bad"]["state"] == "skipped"
    assert tasks["other"]["state"] == "done"
    assert json.loads(Path(tasks["other"]["log"]).read_text().splitlines()[-1])["splits"]
