"""Readers of each dataset's standard on-disk layout (CIFAR, STL-10, UTKFace, CelebA, synthetic).

Imported by ``data.registry`` only."""
