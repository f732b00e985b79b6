"""``python -m lightning_talos``."""

from lightning_talos.cli import main

raise SystemExit(main())
