"""Stages: the registry of training and attack stages and methods, and their runners.

``registry`` says what each stage and method is; ``builders`` / ``defences`` make their
LightningModules and load their classifiers; ``training`` and ``attacking`` run one stage for
one role or method (reuse, resume or train, as its
:class:`~lightning_talos.runs.folder.StageFolder` decides);
``attack`` / ``strong_attacks`` / ``references`` / ``features`` are the attack stages'
computations; ``results`` writes ``results.json``; ``trainer`` and ``wandb_log`` build the
Trainer and log to W&B. Imported by the report, the orchestration and the CLI; imports runs,
analysis, modules and everything below them, never the report or the orchestration.
"""
