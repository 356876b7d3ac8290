"""One typed configuration: command-line flags > ``LEANSTEP_*`` environment variables > defaults.

Every field of :class:`Config` is one setting. Its flag is ``--field-name`` and
its environment variable ``LEANSTEP_FIELD_NAME``; the CLI builds both from the
field list, so a new setting is one line here.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from leanstep.check.verdict import Trust
from leanstep.generate.base import BACKENDS, DEFAULT_HF_MODEL, MAX_BATCH_WINDOW_S
from leanstep.generate.hint import DEFAULT_HINT_TACTICS
from leanstep.generate.proofs import PROOF_FORMATS
from leanstep.prove.strategy import STRATEGIES
from leanstep.repl.sandbox import MODES as SANDBOX_MODES

ENV_PREFIX = "LEANSTEP_"
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+")  # the shape of a browser's `Origin` header


def _default_max_repls() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def _setting(default: Any, help: str, *, group: str = "server", **kw: Any) -> Any:
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, "group": group, **kw})
    return field(default=default, metadata={"help": help, "group": group, **kw})


@dataclass(frozen=True)
class Config:
    # Lean and the REPL pool
    workspace: Path | None = _setting(None, "Lean project the REPL runs in (`lake env <repl>` there); needed for --repl lake", group="pool")
    repl: str = _setting("lake", "REPL to run: 'lake' (the workspace's REPL), 'sim' (simulated REPL for tests/benchmarks), or a command line", group="pool")
    max_repls: int = _setting(_default_max_repls, "most REPL processes at once", group="pool")
    warm_headers: tuple[str, ...] | None = _setting(None, "headers to keep warm REPLs for, separated by ';;' (default: 'import Mathlib' when the workspace has Mathlib)", group="pool")
    headers_per_repl: int = _setting(4, "headers one REPL may import before it is replaced instead (each import is kept in memory)", group="pool")
    timeout: float = _setting(60.0, "wall-clock seconds one proof may take before its REPL is killed", group="pool")
    import_timeout: float = _setting(600.0, "wall-clock seconds a header import may take", group="pool")
    min_timeout: float = _setting(1.0, "smallest per-proof timeout a request may ask for (less: 422); tiny timeouts only kill REPLs", group="pool")
    max_restarts_per_minute: int = _setting(0, "REPL restarts (replacements after a timeout, crash, recycling or eviction) allowed per minute; more are deferred (0: 3 per REPL of --max-repls, at least 6)", group="pool")
    mem_limit_mb: int = _setting(0, "recycle a REPL whose resident memory exceeds this many MB (0: half the machine's memory / max-repls)", group="pool")
    max_uses: int = _setting(500, "recycle a REPL after this many requests (the REPL never frees envs)", group="pool")
    queue_wait: float = _setting(120.0, "seconds a request may wait for a free REPL before it is answered 'overloaded'", group="pool")
    sandbox: str = _setting("auto", f"isolation for checked code: {', '.join(SANDBOX_MODES)}", group="pool")
    max_procs: int = _setting(256, "process-count limit inside a sandboxed REPL", group="pool")
    max_file_mb: int = _setting(512, "largest file a sandboxed REPL may write, in MB", group="pool")
    allow_root_repl: bool = _setting(False, "accept REPLs that keep root's user id (without capabilities) when no unprivileged user can reach the REPL; checked code can then read and write what root owns", group="pool")
    cache_size: int = _setting(10000, "results kept in the verification cache (0 disables it)", group="pool")
    # HTTP server
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(6000, "port to listen on")
    threads: int = _setting(32, "HTTP worker threads")
    api_key: tuple[str, ...] = _setting((), "require `Authorization: Bearer <key>` on every request, with one of these keys (comma-separated; each key owns its own proof sessions); without one /health shows only liveness and counts", sep=",")
    allow_origin: tuple[str, ...] = _setting((), "browser origins allowed to call the server, comma-separated, e.g. https://app.example (default: none; any other `Origin` gets 403)", sep=",")
    allow_host: tuple[str, ...] = _setting((), "host names /mcp answers to, comma-separated, besides the loopback names when --host is a loopback address; with a list, or on loopback, any other `Host` header gets 421 (DNS rebinding); e.g. the public name a local proxy passes on", sep=",")
    request_read_timeout: float = _setting(30.0, "seconds a client may take to send one request (headers and body) or stay idle between requests; slower connections are closed")
    max_body_mb: float = _setting(16.0, "largest request body in MB (larger: 413)")
    max_batch: int = _setting(10000, "most snippets in one verification request (more: 413)")
    max_headers_per_request: int = _setting(8, "most distinct headers (import blocks) in one verification request (more: 422); each costs an import")
    shutdown_grace: float = _setting(10.0, "seconds in-flight requests may run after SIGTERM before their REPLs are killed and they are answered 'server shutting down'")
    trust: Trust = _setting(Trust.STRICT, "trust level of a verification request that names none: lenient (no error, no sorry), strict (+ source policy, axiom audit, statement checked by Lean) or sealed (+ kernel re-check of the compiled module); see docs/verdicts.md", enum=Trust)
    wire: str = _setting("leanstep", "answer shape of /verify and /api/check when a request names none: leanstep (Kimina's fields plus verdict, reasons, trust, cached, limits) or kimina-exact (Kimina's JSON exactly: no leanstep-only keys, Kimina's env numbering)")
    allow_import: tuple[str, ...] | None = _setting(None, "modules a snippet may import at strict and sealed, comma-separated; a module allows its submodules (default: what the warm headers import; with no warm headers, any)", sep=",")
    allow_native_decide: bool = _setting(False, "accept native_decide and Lean.ofReduceBool at strict and sealed (they trust the compiler, not the kernel)")
    # Tracing (for `leanstep plan`)
    trace: Path | None = _setting(None, "append one JSON line per distinct snippet of every /verify and /api/check request to this file: digests of the header and the result-cache key, sizes, seconds and the verdict, never source text; `leanstep plan FILE` sizes the caches from it", group="trace")
    # Generation
    backend: str = _setting("hf", "generation backend: hf, vllm, openai, llamacpp (a GGUF file, see --gguf), hint (a fixed tactic list, no model) or scripted (proposals replayed from --script, no model)", group="generate")
    script: Path | None = _setting(None, "proposals file of the scripted backend: JSON lines of {goal, tactics} and {theorem, proofs, round}", group="generate")
    hint_tactics: tuple[str, ...] = _setting(DEFAULT_HINT_TACTICS, "tactics the hint backend suggests, in order, separated by ';;'", group="generate")
    hf_model: str = _setting(DEFAULT_HF_MODEL, "model path or hub id", group="generate")
    prompt_format: str | None = _setting(None, "prompt format: proofstep, state or chat (default: chosen from the model)", group="generate")
    num_samples: int = _setting(8, "candidates generated per request", group="generate")
    temperatures: tuple[float, ...] = _setting((0.5,), "sampling temperatures, comma-separated (0 = greedy)", group="generate")
    num_beams: int = _setting(0, "beam search with this many beams instead of sampling (0: sample)", group="generate")
    compile: bool = _setting(False, "torch.compile the GPU decoder (faster steps after a long first compile)", group="generate")
    max_new_tokens: int = _setting(64, "longest candidate in tokens", group="generate")
    device: str = _setting("auto", "torch device: auto, cpu, cuda, cuda:1, mps", group="generate")
    dtype: str = _setting("auto", "model dtype: auto, float32, bfloat16, float16", group="generate")
    openai_base_url: str | None = _setting(None, "OpenAI-compatible server URL (backend openai)", group="generate")
    openai_api_key: str | None = _setting(None, "key for the OpenAI-compatible server", group="generate")
    gguf: Path | None = _setting(None, "GGUF model file of the llamacpp backend (llama.cpp, CPU or laptop GPU; install it with `make llamacpp`)", group="generate")
    llamacpp_threads: int = _setting(0, "CPU threads of the llamacpp backend (0: one per core the server may use)", group="generate")
    generation_batch: int = _setting(16, "most concurrent /suggest requests whose candidates the hf backend generates in one batched model call (1: each request alone)", group="generate")
    generation_window: float = _setting(0.005, f"seconds a generation waits for concurrent requests to join its batch (0 to {MAX_BATCH_WINDOW_S:g}; 0: only those already waiting)", group="generate")
    # Suggestion checking
    check_timeout: float = _setting(5.0, "wall-clock budget in seconds for checking all candidates of one suggestion", group="suggest")
    heartbeats: int = _setting(200000, "heartbeat cap for each candidate tactic", group="suggest")
    # Proof sessions
    session_timeout: float = _setting(30.0, "default and most wall-clock seconds of one proof-session start, step or attempt (rebuilding lost states included); a request may ask less", group="sessions")
    session_ttl: float = _setting(600.0, "seconds a proof session may stay idle before it is closed", group="sessions")
    max_sessions: int = _setting(256, "most proof sessions open on the server (more: 429)", group="sessions")
    max_sessions_per_key: int = _setting(32, "most proof sessions open per API key (more: 429)", group="sessions")
    max_session_states: int = _setting(1000, "most proof states one session may hold (more: 409)", group="sessions")
    max_attempt_tactics: int = _setting(64, "most tactics in one multi-attempt (more: 422)", group="sessions")
    # Proving (best-first search and whole proofs)
    strategy: str = _setting("auto", "how a proof is looked for when the request names no way: search (best-first over tactics), whole (complete proofs, repaired with Lean's errors) or auto (search, then whole)", group="prove")
    prove_timeout: float = _setting(120.0, "most wall-clock seconds one proof may be looked for (a request may ask for less)", group="prove")
    prove_expansions: int = _setting(64, "proof states best-first search expands when the request names no budget", group="prove")
    prove_samples: int = _setting(8, "whole proofs sampled when the request names no budget", group="prove")
    search_width: int = _setting(2, "open states best-first search expands at once (each checks its candidates over the pool's REPLs)", group="prove")
    prove_rounds: int = _setting(1, "repair rounds (failed proofs sent back with Lean's errors) when the request names no budget", group="prove")
    proof_format: str | None = _setting(None, f"whole-proof prompt format: {', '.join(PROOF_FORMATS)} (default: chosen from the model)", group="prove")
    proof_max_new_tokens: int = _setting(1024, "longest whole proof in tokens", group="prove")
    # Set-up of a Lean workspace (`leanstep setup`, `leanstep serve --setup`)
    repl_repo: str = _setting("https://github.com/leanprover-community/repl", "git URL the Lean REPL is fetched from (a mirror must keep the release tags and commits)", group="setup")
    elan_installer: str = _setting("https://elan.lean-lang.org/elan-init.sh", "URL of elan's official installer script, run when `lake` is missing (an `elan-init` on PATH is run instead)", group="setup")

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _field_type(f: Any) -> str:
    return str(f.type)


def _parse_value(f: Any, raw: str) -> Any:
    kind = _field_type(f)
    choices = f.metadata.get("enum")
    if choices is not None:
        return parse_enum(choices, raw)
    if kind.startswith("Path"):
        return Path(raw).expanduser()
    if kind.startswith("tuple[float"):
        return tuple(float(x) for x in raw.split(",") if x.strip())
    if kind.startswith("tuple[str"):
        return tuple(x.strip() for x in raw.split(f.metadata.get("sep", ";;")) if x.strip())
    if kind.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw


EnumT = TypeVar("EnumT", bound=Enum)


def parse_enum(choices: type[EnumT], raw: str, what: str = "") -> EnumT:
    """``raw`` as a member of ``choices``, or a ValueError listing them."""
    try:
        return choices(raw)
    except ValueError:
        where = f"{what}: " if what else ""
        raise ValueError(f"{where}expected one of {', '.join(str(c.value) for c in choices)}, got {raw!r}") from None


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, groups: Sequence[str],
                  names: Collection[str] | None = None) -> None:
    """Add a flag for every setting in ``groups`` (only ``names`` when given); defaults stay unset so env vars
    can fill in."""
    for f in fields(Config):
        if f.metadata["group"] not in groups or (names is not None and f.name not in names):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [env {env_var(f.name)}]"
        if _field_type(f).startswith("bool"):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


# The settings of the server group that say how proofs are judged: what the commands that check without serving
# HTTP (`leanstep mcp`, `verify`, `prove`, `eval`) take of it.
TRUST_SETTINGS = ("trust", "allow_import", "allow_native_decide")
# What a command that runs the services without HTTP takes besides (`leanstep mcp`, `prove`, `eval`).
SERVICE_GROUPS = ("pool", "generate", "suggest", "sessions", "prove")


def add_no_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-model``, the same as ``--backend hint``; :func:`load` reads it."""
    parser.add_argument("--no-model", dest="no_model", action="store_true",
                        help="load no model: suggestions and proofs come from a fixed list of common tactics, "
                             "checked as usual (the same as --backend hint)")


def add_service_arguments(parser: argparse.ArgumentParser, names: Collection[str] | None = None) -> None:
    """The flags of a command that runs the services without HTTP: the pool, the model, proof sessions and
    proving (only ``names`` when given), how proofs are judged, and ``--no-model``."""
    add_arguments(parser, SERVICE_GROUPS, names=names)
    add_arguments(parser.add_argument_group("trust (docs/verdicts.md)"), ("server",), names=TRUST_SETTINGS)
    add_no_model_argument(parser)


def load(args: argparse.Namespace | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting: a given flag wins over ``LEANSTEP_*``, which wins over the default; ``--no-model``
    wins over any backend."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Config):
        raw = given.get(f.name)
        source = f"--{f.name.replace('_', '-')}"
        if raw is None and env_var(f.name) in environ:
            raw, source = environ[env_var(f.name)], env_var(f.name)
        if raw is None:
            continue
        try:
            values[f.name] = raw if not isinstance(raw, str) else _parse_value(f, raw)
        except ValueError as exc:
            raise ValueError(f"invalid value for {source}: {exc}") from None
    if given.get("no_model"):
        values["backend"] = "hint"
    config = Config(**values)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    positive = ("max_repls", "headers_per_repl", "timeout", "import_timeout", "queue_wait", "threads", "max_body_mb", "max_batch",
                "request_read_timeout", "num_samples", "max_new_tokens", "check_timeout", "max_uses", "max_procs", "max_file_mb",
                "session_timeout", "session_ttl", "max_sessions", "max_sessions_per_key", "max_session_states",
                "max_attempt_tactics", "generation_batch", "prove_timeout", "prove_expansions", "prove_samples",
                "proof_max_new_tokens", "search_width")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    if config.sandbox not in SANDBOX_MODES:
        raise ValueError(f"--sandbox must be one of {', '.join(SANDBOX_MODES)}, got {config.sandbox!r}")
    if not 0 <= config.generation_window <= MAX_BATCH_WINDOW_S:
        raise ValueError(f"--generation-window must be between 0 and {MAX_BATCH_WINDOW_S:g} seconds, "
                         f"got {config.generation_window:g}")
    if config.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.backend == "llamacpp" and config.gguf is None:
        raise ValueError("--backend llamacpp needs --gguf FILE (a GGUF model file)")
    if config.llamacpp_threads < 0:
        raise ValueError(f"--llamacpp-threads must be 0 (one per core) or positive, got {config.llamacpp_threads}")
    if not 0 < config.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {config.port}")
    _validate_request_limits(config)
    _validate_proving(config)
    for origin in config.allow_origin:
        if not ORIGIN.fullmatch(origin):
            raise ValueError(f"--allow-origin takes origins as browsers send them (scheme://host[:port], "
                             f"no path or trailing slash), got {origin!r}")


def _validate_request_limits(config: Config) -> None:
    """The limits a request is held to must leave it room: a floor under the ceiling, at least one header."""
    if not 0 < config.min_timeout <= config.timeout:
        raise ValueError(f"--min-timeout must be positive and at most --timeout ({config.timeout:g}), "
                         f"got {config.min_timeout:g}")
    if config.session_timeout < config.min_timeout:
        raise ValueError(f"--session-timeout must be at least --min-timeout ({config.min_timeout:g}), "
                         f"got {config.session_timeout:g}")
    if config.max_headers_per_request <= 0:
        raise ValueError(f"--max-headers-per-request must be positive, got {config.max_headers_per_request}")
    if config.max_restarts_per_minute < 0:
        raise ValueError("--max-restarts-per-minute must be 0 (automatic) or positive, "
                         f"got {config.max_restarts_per_minute}")
    if config.shutdown_grace < 0:
        raise ValueError(f"--shutdown-grace must be 0 or more seconds, got {config.shutdown_grace:g}")


def _validate_proving(config: Config) -> None:
    if config.strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {config.strategy!r}")
    if config.prove_rounds < 0:
        raise ValueError(f"--prove-rounds must be 0 or more, got {config.prove_rounds}")
    if config.proof_format is not None and config.proof_format not in PROOF_FORMATS:
        raise ValueError(f"--proof-format must be one of {', '.join(PROOF_FORMATS)}, got {config.proof_format!r}")
    if config.backend == "scripted" and config.script is None:
        raise ValueError("--backend scripted needs --script FILE (the proposals to replay)")
