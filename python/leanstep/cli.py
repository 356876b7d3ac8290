"""The ``leanstep`` command: serve | mcp | verify | prove | eval | generate | extract | finetune | plan | bench |
setup | doctor.

Each subcommand imports what it needs only when it runs, so ``leanstep verify``
never loads torch and ``leanstep --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from leanstep import config as config_mod

if TYPE_CHECKING:
    from leanstep.cluster.router import RayTarget

# The settings that say which model the server would run: what `leanstep doctor` checks of it.
DOCTOR_MODEL = ("backend", "hf_model", "gguf", "script", "openai_base_url")
BENCHMARKS = {
    "throughput": "throughput",
    "editor": "editor",
    "suggest-check": "suggest_check",
    "suggest-latency": "suggest_latency",
    "sessions": "session_steps",
    "overhead": "overhead",
    "verify-load": "verify_load",
    "generation": "generation",
    "cpu-generation": "cpu_generation",
    "ray": "ray_scale",
    "prove": "prove",
    "mcp": "mcp_latency",
}



def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and ``--ray-actors N``, the same for ``serve`` and ``verify`` (imports nothing from Ray)."""
    group = parser.add_argument_group("Ray cluster")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="check proofs on a Ray cluster, one warm pool per node (--max-repls REPLs each); "
                            "ADDRESS as for `ray.init` ('auto': the cluster this node joined); "
                            "without ADDRESS: $RAY_ADDRESS or a local Ray")
    group.add_argument("--ray-actors", type=int, default=None, metavar="N",
                       help="verifier actors to start (default: one per node)")


def ray_target(args: argparse.Namespace) -> RayTarget | None:
    """The cluster ``--ray`` and ``--ray-actors`` name, or None without ``--ray``."""
    if args.ray is None:
        return None
    from leanstep.cluster.router import RayTarget

    return RayTarget(address=args.ray or None, num_actors=args.ray_actors)


def _serve(args: argparse.Namespace) -> int:
    from leanstep.repl.launch import SetupError
    from leanstep.server.wsgi import ListenError, bind_listeners, serve

    config = config_mod.load(args)
    listeners = []
    try:
        listeners = bind_listeners(config)  # first: a port in use is one line, before any REPL or actor starts
        if args.setup and config.repl == "lake":  # bound, not listening: clients are refused until it serves
            from leanstep.lean_setup import run_setup

            status = run_setup(config, install_elan=True)
            if status != 0:
                return status
        serve(config, cluster=ray_target(args), listeners=listeners)
    except (ListenError, SetupError) as exc:
        print(f"leanstep serve: {exc}", file=sys.stderr)
        return 2
    finally:
        for sock in listeners:
            sock.close()
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from leanstep.mcp.stdio import run_stdio
    from leanstep.repl.launch import SetupError

    config = config_mod.load(args)
    try:
        return run_stdio(config)
    except SetupError as exc:
        print(f"leanstep mcp: {exc}", file=sys.stderr)
        return 2


def _generate(args: argparse.Namespace) -> int:
    """The model's raw candidates, one JSON line each: for trying a model or prompt without a REPL."""
    import json

    from leanstep.generate import make_generator, settings_from_config
    from leanstep.generate.base import GenerationRequest

    config = config_mod.load(args)
    generator = make_generator(settings_from_config(config))
    request = GenerationRequest(tactic_state=args.state, prefix=args.prefix, num_samples=config.num_samples,
                                temperatures=config.temperatures, max_new_tokens=config.max_new_tokens)
    for candidate in generator.generate(request):
        print(json.dumps({"text": candidate.text, "score": candidate.score}, ensure_ascii=False))
    return 0


def _bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks").is_dir():
        print("leanstep bench: the benchmarks/ folder of a source checkout is needed", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    status = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.{BENCHMARKS[name]}")
        extra = ["--quick"] if args.quick else []
        status |= module.main(extra + list(args.rest))
    return status


def _setup(args: argparse.Namespace) -> int:
    from leanstep.lean_setup import run_setup

    return run_setup(config_mod.load(args), install_elan=args.install_elan)


def _doctor(args: argparse.Namespace) -> int:
    from leanstep.doctor import run_doctor

    config = config_mod.load(args)
    return run_doctor(args.url, config)


def _add_module_command(sub: argparse._SubParsersAction, name: str, about: str, module: ModuleType) -> None:
    """The subcommand ``name`` whose flags and run are ``module.add_arguments`` and ``module.run``."""
    parser = sub.add_parser(name, help=about, description=about)
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanstep",
                                     description="LLM tactic suggestions and proof checking for Lean 4")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (/suggest, /prove, /sessions, /mcp, /verify, "
                                         "/api/check, /health, /metrics)")
    config_mod.add_arguments(serve, ("pool", "server", "generate", "suggest", "sessions", "prove", "setup", "trace"))
    config_mod.add_no_model_argument(serve)
    serve.add_argument("--setup", action="store_true",
                       help="with --repl lake, first set the workspace up as `leanstep setup --install-elan` does "
                            "(each step skipped when done); `make serve` passes it")
    add_ray_arguments(serve)
    serve.set_defaults(func=_serve)

    about = "run the MCP server on stdin/stdout, for an MCP client that starts it (see docs/mcp.md)"
    mcp = sub.add_parser("mcp", help=about, description=about)
    config_mod.add_service_arguments(mcp)
    mcp.set_defaults(func=_mcp)

    from leanstep import eval_cli, prove_cli, verify_cli
    from leanstep.data import extract, finetune
    from leanstep.perf import report

    _add_module_command(sub, "verify", "verify proofs from a .jsonl file, a .lean file or a directory", verify_cli)
    _add_module_command(sub, "prove", "fill the sorries of a .lean file with proofs checked by Lean "
                                      "(best-first search, whole proofs with repair)", prove_cli)
    _add_module_command(sub, "eval", "pass@k of a proving strategy on a .jsonl file of problems", eval_cli)

    about = "print the model's raw tactic candidates for one goal, without checking them in Lean"
    generate = sub.add_parser("generate", help=about, description=about)
    config_mod.add_arguments(generate, ("generate",))
    generate.add_argument("--state", required=True, help="pretty-printed goal")
    generate.add_argument("--prefix", default="", help="the tactic prefix to complete")
    generate.set_defaults(func=_generate)

    _add_module_command(sub, "extract", "write the tactic steps of Lean files (goals before, tactic, goals after) as "
                                        "JSON lines for training", extract)
    _add_module_command(sub, "finetune", "fine-tune a causal or seq2seq model on `leanstep extract` records; "
                                         "`leanstep serve --hf-model` serves it", finetune)
    _add_module_command(sub, "plan", "size the result cache and the pool from a trace of `leanstep serve --trace "
                                     "FILE`", report)

    bench = sub.add_parser("bench", help="run a benchmark from benchmarks/ and print its figures")
    bench.add_argument("name", choices=["all", *BENCHMARKS])
    bench.add_argument("--quick", action="store_true", help="small size (about a minute on 2 cores)")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    bench.set_defaults(func=_bench)

    about = ("set a Lean workspace up for the server: Lean, the REPL for its Lean version, Mathlib's cache, "
             "warm headers (each step skipped when done)")
    setup = sub.add_parser("setup", help=about, description=about)
    setup.add_argument("--workspace", default=".", help="the Lean project (default: current directory)")
    setup.add_argument("--install-elan", action="store_true",
                       help="install elan (Lean's toolchain manager) with its official installer when lake is missing")
    config_mod.add_arguments(setup, ("setup",))
    config_mod.add_arguments(setup, ("pool",), names=("warm_headers", "import_timeout"))
    setup.set_defaults(func=_setup)

    doctor = sub.add_parser("doctor", help="check dependencies, Lean, the REPL, the model and the server")
    config_mod.add_arguments(doctor, ("pool",))
    config_mod.add_arguments(doctor.add_argument_group("the model to check"), ("generate",), names=DOCTOR_MODEL)
    config_mod.add_no_model_argument(doctor)
    doctor.add_argument("--url", default="http://127.0.0.1:6000", help="server to check")
    doctor.set_defaults(func=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ValueError as exc:  # configuration errors carry the flag that was wrong
        parser.exit(2, f"leanstep {args.command}: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
