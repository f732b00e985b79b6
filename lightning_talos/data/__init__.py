"""Data: dataset formats on disk, the pooled dataset, saved splits, transforms, the datamodule.

Imported by attacks (splits), modules, runs, stages and above; imports only the shared utilities.
"""
