"""The state of a run folder on disk: what a stage's folder holds and what it means.

``folder`` reads a stage's manifest once (:class:`~lightning_talos.runs.folder.StageFolder`) and
answers done / resumable / stale (which keys differ) / upstream good, and decides fresh, resume or
done; ``settings`` says which settings identify a run and a stage's result; ``records`` writes
manifests and JSON atomically with the code's provenance;
``checkpoints`` writes and reads ``last.ckpt``; ``signals`` saves on SIGTERM / Ctrl-C;
``lock`` keeps one process per run; ``context`` is what the stages of one run share (config,
pool, splits, folders). Knows nothing of the stage registry: imported by ``stages``, the report,
the orchestration and the CLI; imports only config, data and the shared utilities.
"""
