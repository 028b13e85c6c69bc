"""Published claims about normalization, each tested by one of normlab's experiments and given a
verdict computed from its numbers: holds, does not hold or inconclusive.

Modules
-------
verdict
    The verdict logic, pure: a claimed difference, a level, an equivalence within a margin,
    a compound claim, each judged by the 95% interval of :mod:`normlab.experiments.noise`.
measures
    Per claim, the function of its experiment's results that measures it.
catalog
    The claims as data (``CLAIMS``): text, source, experiment, setting, measure.
run
    The claims' studies run as one sweep (locally, ``jobs`` processes or Dask), each
    experiment once, then a verdict per claim (``normlab claims``).

Examples
--------
>>> from normlab.claims import ClaimsConfig, plan
>>> sorted(plan(ClaimsConfig(quick=True, only=("bn-small-batch", "renorm-small-batch"))))
['renorm']
"""

from __future__ import annotations

from normlab.claims.catalog import CLAIMS, Claim, get_claims
from normlab.claims.run import ClaimsConfig, plan, run_claims
from normlab.claims.verdict import FAILS, HOLDS, INCONCLUSIVE, VERDICTS, Finding

__all__ = [
    "CLAIMS",
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "VERDICTS",
    "Claim",
    "ClaimsConfig",
    "Finding",
    "get_claims",
    "plan",
    "run_claims",
]
