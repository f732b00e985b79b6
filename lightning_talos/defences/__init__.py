"""Defences compared with Talos: concept erasure (LEACE) and DP-SGD accounting helpers.

Imported by modules and stages; imports attacks (model-output types) and the shared utilities.
"""
