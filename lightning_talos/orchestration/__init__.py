"""Orchestration: the audit graph over the registered stages (and the launchers that run it).

``audit`` plans every stage of the paper for a run (done, resume, fresh, stale) and runs them in
dependency order, then writes ``results.json`` and the report. Imported only by the CLI (and the
bench); imports the stages, the run folder and the report.
"""
