"""Losses: NT-Xent with the distributed all-gather inside the loss.

Imported by modules; imports the shared utilities (distributed).
"""
