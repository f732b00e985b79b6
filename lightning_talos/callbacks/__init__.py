"""Lightning callbacks for any user's ``Trainer``: :class:`PrivacyAudit` measures membership
(and attribute) leakage of the model being trained every few epochs.

Callbacks import attacks, data helpers and the distributed utilities below them; the training
stages (``stages/``) and users' own scripts import them, never the other way round.
"""

from lightning_talos.callbacks.privacy import PrivacyAudit

__all__ = ["PrivacyAudit"]
