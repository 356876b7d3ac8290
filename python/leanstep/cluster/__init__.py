"""Verification across many machines on Ray: one verifier actor per node, one router on the driver.

A Lean REPL pool is node-local state (warm header imports, gigabytes each), so the
unit Ray schedules is a :class:`VerifierActor` (``actor``) that owns one node's pool
and checks sub-batches of distinct snippets on it. The driver-side
:class:`RayVerifier` (``router``) is a :class:`leanstep.check.verify.BatchVerifier`:
it de-duplicates and caches for the whole cluster (the actors do neither), routes
by header affinity and load, and retries the work of an actor that died.

Ray is optional (``pip install leanstep[ray]``) and imported only when a verifier
is built: this package imports without it.
"""

from leanstep.cluster.actor import ActorStatus, VerifierActor, import_ray
from leanstep.cluster.router import RayCounters, RayTarget, RayVerifier, make_verifier

__all__ = ["ActorStatus", "RayCounters", "RayTarget", "RayVerifier", "VerifierActor", "import_ray", "make_verifier"]
