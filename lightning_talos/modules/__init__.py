"""LightningModules: SimCLR, Talos, the linear and supervised classifiers, LEACE and DP-SGD.

They compose models, losses and defences and take explicit settings (no config objects). Imported
by stages and the bench; imports defences, attacks, data, models, losses and the shared utilities.
"""
