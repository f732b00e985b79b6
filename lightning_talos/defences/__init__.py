"""Defences compared with Talos: concept erasure (LEACE) and DP-SGD accounting helpers."""
