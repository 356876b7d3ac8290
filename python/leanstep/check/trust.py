"""What a server's trust settings build: the source policy, the axiom allowlist and the sealed re-checker.

``serve``, ``leanstep verify`` and every cluster node build them here, so a
snippet meets the same rules wherever it is checked. The import allowlist is
``--allow-import`` when given, else what the warm headers import (a snippet
may then import what the server keeps warm, and nothing that could bring in
other axioms, attributes or code); with no warm headers, any import.
"""

from __future__ import annotations

from leanstep.check.policy import SourcePolicy, imported_modules
from leanstep.check.sealed import SealedChecker
from leanstep.check.verify import Checks
from leanstep.config import Config
from leanstep.repl.launch import sandbox_plan, warm_headers


def allowed_imports(config: Config) -> frozenset[str] | None:
    """The modules a strict snippet may import (None: any)."""
    if config.allow_import is not None:
        return frozenset(config.allow_import)
    modules = frozenset().union(*(imported_modules(h) for h in warm_headers(config)))
    return modules or None


def checks_from_config(config: Config) -> Checks:
    """The policy and axiom allowlist of ``config``, and the sealed re-checker of its workspace.

    The re-checker finds its tools on the first ``sealed`` request (``lake env`` once, then kept);
    a server that is never asked for ``sealed`` never runs it. With ``--repl sim`` there is no
    workspace, so ``sealed`` answers ``sealed_unavailable`` saying so.
    """
    policy = SourcePolicy(allowed_imports=allowed_imports(config), allow_native=config.allow_native_decide)
    workspace = config.workspace if config.repl == "lake" else None
    sealed = SealedChecker(workspace, sandbox_plan(config))
    return Checks(policy=policy, sealed=sealed, allow_native=config.allow_native_decide)


__all__ = ["allowed_imports", "checks_from_config"]
