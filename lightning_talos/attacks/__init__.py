"""Attacks: membership and attribute inference on arrays of model outputs and embeddings.

Metrics (ROC, TPR at low FPR, thresholds), the NN / metric / label-only / augmentation attacks,
LiRA, RMIA, encoder-level attacks, attribute probes and the reference-model plan. Knows nothing of
run folders or Lightning; imported by defences, modules, stages and the bench; imports data
(splits), models (small heads) and the shared utilities.
"""
