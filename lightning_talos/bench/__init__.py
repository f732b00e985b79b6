"""The benchmark (``lightning-talos bench``): throughput ratios measured in one run.

Orchestration-level: imports the stages' builders and everything below; imported only by the CLI.
"""
