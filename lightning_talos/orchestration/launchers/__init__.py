"""Launchers: how ``audit`` runs its stage graph (orchestration layer).

``launcher=none`` (the default) is ``orchestration/audit.py`` itself: every stage in the audit's own
process, one after the other. The launchers here run the same graph as **jobs**, each the
single-stage command a user could type (``pretrain role=target ...``, ``references method=M
--only=J``, ``mia method=M``), so manifests, stage locks, resume, provenance and signal handling
are the stage commands' own:

* ``jobs.py``: the audit graph (``orchestration/audit.graph`` and ``plan``) as jobs with their
  commands and dependencies; the reference models of a method are one job array.
* ``local.py``: ``launcher=local``, up to ``launcher.parallel`` jobs at once as processes here,
  forked from a fork server that imported torch and Lightning once (``forkserver.py``).
* ``slurm.py``: ``launcher=slurm``, one SLURM job per stage through submitit, chained with
  ``afterok``, and a last job that writes ``results.json``; ``scheduler.py`` asks SLURM about
  recorded jobs.
* ``state.py``: ``<run>/jobs.json``, the jobs a launcher started; ``status.py``: the
  ``status`` command's view of a run.
* ``task.py``: what a SLURM job runs (the stage command as a child process); stdlib only.

Who may import it: the CLI. It imports ``orchestration.audit`` (the audit
graph), ``stages``, ``runs`` and below,
never the CLI.
"""
