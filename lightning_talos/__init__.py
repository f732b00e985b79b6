"""lightning_talos: privacy risks of contrastive learning, measured and mitigated."""

__version__ = "0.1.0"
