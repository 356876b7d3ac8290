"""Turn the configuration into a REPL command line and a ready pool.

``--repl lake`` runs ``lake env <repl>`` in the Lean workspace (so ``import
Mathlib`` resolves); ``--repl sim`` runs the simulated REPL; anything else is a
command line run as given. Every launch goes through the sandbox.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import psutil

import leanstep
from leanstep.config import Config
from leanstep.repl.pool import PoolSettings, ReplPool
from leanstep.repl.sandbox import (
    SandboxError,
    SandboxPlan,
    SandboxPolicy,
    plan_sandbox,
    sweep_stale_cgroups,
    sweep_stale_workdirs,
)
from leanstep.workspace import find_lake, find_repl_binary, workspace_has_mathlib

log = logging.getLogger(__name__)

class SetupError(RuntimeError):
    """The configuration cannot start a REPL; the message says what to run."""


def repl_command(config: Config) -> tuple[tuple[str, ...], Path | None]:
    """The REPL's argv and working directory, or a SetupError saying what to fix."""
    if config.repl == "sim":
        return (sys.executable, "-m", "leanstep.sim"), None
    if config.repl == "lake":
        workspace = config.workspace
        if workspace is None:
            raise SetupError("no Lean workspace given: pass --workspace DIR (a Lake project) or set "
                             "LEANSTEP_WORKSPACE; for a dry run without Lean use --repl sim")
        if not (workspace / "lakefile.lean").exists() and not (workspace / "lakefile.toml").exists():
            raise SetupError(f"{workspace} is not a Lake project (no lakefile.lean or lakefile.toml)")
        lake = find_lake()
        if lake is None:
            raise SetupError("`lake` is not on PATH: serve with --setup (as `make serve` does) to install elan "
                             "and build the REPL, or install elan (https://github.com/leanprover/elan) and run "
                             f"`leanstep setup --workspace {workspace}`")
        binary = find_repl_binary(workspace)
        if binary is None:
            raise SetupError(f"no REPL binary for this workspace's Lean in {workspace}: run `leanstep setup "
                             f"--workspace {workspace}` or serve with --setup (both build the release of "
                             "leanprover-community/repl for the workspace's toolchain)")
        return (lake, "env", str(binary)), workspace
    argv = tuple(shlex.split(config.repl))
    if not argv or shutil.which(argv[0]) is None:
        raise SetupError(f"REPL command {config.repl!r} not found")
    return argv, config.workspace


def warm_headers(config: Config) -> tuple[str, ...]:
    if config.warm_headers is not None:
        return config.warm_headers
    if config.repl == "lake" and config.workspace is not None and workspace_has_mathlib(config.workspace):
        return ("import Mathlib",)
    return ()


def mem_limit_bytes(config: Config) -> int:
    if config.mem_limit_mb:
        return config.mem_limit_mb * 1024 * 1024
    return psutil.virtual_memory().total // 2 // config.max_repls


def restarts_per_minute(config: Config) -> int:
    """``--max-restarts-per-minute``, or when 0 three per REPL (at least 6): above what honest work needs
    (under the default --timeout a REPL can time out at most once a minute)."""
    return config.max_restarts_per_minute or max(6, 3 * config.max_repls)


def sandbox_plan(config: Config) -> SandboxPlan:
    """How this configuration's REPLs will run, or a SetupError saying what to change (serve and doctor share it)."""
    argv, cwd = repl_command(config)
    policy = SandboxPolicy(config.sandbox, config.max_procs, config.max_file_mb * 1024 * 1024,
                           allow_root_repl=config.allow_root_repl)
    env = dict(os.environ)
    if config.repl == "sim":
        package_root = str(Path(leanstep.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        return plan_sandbox(argv, cwd=cwd, env=env, policy=policy, workdir_parent=Path(tempfile.gettempdir()))
    except SandboxError as exc:
        raise SetupError(f"sandbox: {exc}") from None


def make_pool(config: Config) -> ReplPool:
    """Build (not start) the pool the configuration describes."""
    plan = sandbox_plan(config)
    log.info("sandbox: %s", plan.describe())
    if plan.mode != "bwrap":
        log.warning("REPL sandbox is %r: %s", plan.mode, plan.describe())
    swept_cgroups, swept_dirs = sweep_stale_cgroups(), sweep_stale_workdirs(Path(tempfile.gettempdir()))
    if swept_cgroups or swept_dirs:
        log.info("removed %d pids cgroups and %d worker directories left by servers that were killed",
                 swept_cgroups, swept_dirs)
    settings = PoolSettings(
        max_repls=config.max_repls, import_timeout=config.import_timeout, mem_limit_bytes=mem_limit_bytes(config),
        max_uses=config.max_uses, queue_wait=config.queue_wait, warm_headers=warm_headers(config),
        headers_per_repl=config.headers_per_repl, max_restarts_per_minute=restarts_per_minute(config),
    )
    return ReplPool(settings, plan.launch)
