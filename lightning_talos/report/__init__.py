"""The report: ``report.md``, ``compare`` and the README's numbers blocks, from ``results.json``.

Reads results (and the registry's method names and labels); draws with
:mod:`lightning_talos.analysis.plots` and judges nothing itself (the verdicts are
:mod:`lightning_talos.analysis.claims`'). Imported by the orchestration and the CLI; imports the
stages and below.
"""
