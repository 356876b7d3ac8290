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
from leanstep.generate.base import BACKENDS, DEFAULT_HF_MODEL
from leanstep.generate.hint import DEFAULT_HINT_TACTICS
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
    api_key: str | None = _setting(None, "require `Authorization: Bearer <key>` on every request; without it /health shows only liveness and counts")
    allow_origin: tuple[str, ...] = _setting((), "browser origins allowed to call the server, comma-separated, e.g. https://app.example (default: none; any other `Origin` gets 403)", sep=",")
    request_read_timeout: float = _setting(30.0, "seconds a client may take to send one request (headers and body) or stay idle between requests; slower connections are closed")
    max_body_mb: float = _setting(16.0, "largest request body in MB (larger: 413)")
    max_batch: int = _setting(10000, "most snippets in one verification request (more: 413)")
    max_headers_per_request: int = _setting(8, "most distinct headers (import blocks) in one verification request (more: 422); each costs an import")
    shutdown_grace: float = _setting(10.0, "seconds in-flight requests may run after SIGTERM before their REPLs are killed and they are answered 'server shutting down'")
    trust: Trust = _setting(Trust.STRICT, "trust level of a verification request that names none: lenient (no error, no sorry), strict (+ source policy, axiom audit, statement checked by Lean) or sealed (+ kernel re-check of the compiled module); see docs/verdicts.md", enum=Trust)
    wire: str = _setting("leanstep", "answer shape of /verify and /api/check when a request names none: leanstep (Kimina's fields plus verdict, reasons, trust, cached, limits) or kimina-exact (Kimina's JSON exactly: no leanstep-only keys, Kimina's env numbering)")
    allow_import: tuple[str, ...] | None = _setting(None, "modules a snippet may import at strict and sealed, comma-separated; a module allows its submodules (default: what the warm headers import; with no warm headers, any)", sep=",")
    allow_native_decide: bool = _setting(False, "accept native_decide and Lean.ofReduceBool at strict and sealed (they trust the compiler, not the kernel)")
    # Generation
    backend: str = _setting("hf", "generation backend: hf, vllm, openai, llamacpp (a GGUF file, see --gguf), or hint (a fixed tactic list, no model)", group="generate")
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
    # Suggestion checking
    check_timeout: float = _setting(5.0, "wall-clock budget in seconds for checking all candidates of one suggestion", group="suggest")
    heartbeats: int = _setting(200000, "heartbeat cap for each candidate tactic", group="suggest")

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


def load(args: argparse.Namespace | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting: a given flag wins over ``LEANSTEP_*``, which wins over the default."""
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
    config = Config(**values)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    positive = ("max_repls", "headers_per_repl", "timeout", "import_timeout", "queue_wait", "threads", "max_body_mb", "max_batch",
                "request_read_timeout", "num_samples", "max_new_tokens", "check_timeout", "max_uses", "max_procs", "max_file_mb")
    for name in positive:
        if getattr(config, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    if config.sandbox not in SANDBOX_MODES:
        raise ValueError(f"--sandbox must be one of {', '.join(SANDBOX_MODES)}, got {config.sandbox!r}")
    if config.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.backend == "llamacpp" and config.gguf is None:
        raise ValueError("--backend llamacpp needs --gguf FILE (a GGUF model file)")
    if config.llamacpp_threads < 0:
        raise ValueError(f"--llamacpp-threads must be 0 (one per core) or positive, got {config.llamacpp_threads}")
    if not 0 < config.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {config.port}")
    _validate_request_limits(config)
    for origin in config.allow_origin:
        if not ORIGIN.fullmatch(origin):
            raise ValueError(f"--allow-origin takes origins as browsers send them (scheme://host[:port], "
                             f"no path or trailing slash), got {origin!r}")


def _validate_request_limits(config: Config) -> None:
    """The limits a request is held to must leave it room: a floor under the ceiling, at least one header."""
    if not 0 < config.min_timeout <= config.timeout:
        raise ValueError(f"--min-timeout must be positive and at most --timeout ({config.timeout:g}), "
                         f"got {config.min_timeout:g}")
    if config.max_headers_per_request <= 0:
        raise ValueError(f"--max-headers-per-request must be positive, got {config.max_headers_per_request}")
    if config.max_restarts_per_minute < 0:
        raise ValueError("--max-restarts-per-minute must be 0 (automatic) or positive, "
                         f"got {config.max_restarts_per_minute}")
    if config.shutdown_grace < 0:
        raise ValueError(f"--shutdown-grace must be 0 or more seconds, got {config.shutdown_grace:g}")
