"""The names ``results.json`` gives the paper's models and attacks, as its claims read them.

The stage registry registers its methods and attack stages under these names; the verdict rules
(:mod:`lightning_talos.analysis.claims`) and the report read the results by them. They live
here, below the registry, so that the rules over a results dict need no registry.
"""

from __future__ import annotations

#: The paper's three models, in the roles its claims give them: the supervised baseline, the
#: contrastive model, and the defence (claims 1-3 compare them).
PAPER_METHODS = ("supervised", "contrastive", "talos")
#: The paper's two attack stages (membership, attribute inference), as its claims read them.
PAPER_ATTACKS = ("mia", "aia")
