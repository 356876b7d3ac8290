"""The ``leanstep`` command: serve | verify | generate | bench | setup | doctor.

Each subcommand imports what it needs only when it runs, so ``leanstep verify``
never loads torch and ``leanstep --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from leanstep import config as config_mod

if TYPE_CHECKING:
    from leanstep.cluster.router import RayTarget

BENCHMARKS = {
    "throughput": "throughput",
    "editor": "editor",
    "suggest-check": "suggest_check",
    "overhead": "overhead",
    "verify-load": "verify_load",
    "generation": "generation",
    "cpu-generation": "cpu_generation",
    "ray": "ray_scale",
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
    if args.no_model:
        config = config.with_overrides(backend="hint")
    listeners = []
    try:
        listeners = bind_listeners(config)  # first: a port in use is one line, before any REPL or actor starts
        serve(config, cluster=ray_target(args), listeners=listeners)
    except (ListenError, SetupError) as exc:
        print(f"leanstep serve: {exc}", file=sys.stderr)
        return 2
    finally:
        for sock in listeners:
            sock.close()
    return 0


def _verify(args: argparse.Namespace) -> int:
    from leanstep import verify_cli

    return verify_cli.run(args)


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

    return run_setup(Path(args.workspace).resolve())


def _doctor(args: argparse.Namespace) -> int:
    from leanstep.doctor import run_doctor

    config = config_mod.load(args)
    return run_doctor(url=args.url, workspace=config.workspace, model=config.hf_model, config=config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanstep",
                                     description="LLM tactic suggestions and proof checking for Lean 4")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server (/suggest, /verify, /api/check, /health, /metrics)")
    config_mod.add_arguments(serve, ("pool", "server", "generate", "suggest"))
    serve.add_argument("--no-model", action="store_true",
                       help="load no model: /suggest offers a fixed list of common tactics, checked as usual "
                            "(the same as --backend hint)")
    add_ray_arguments(serve)
    serve.set_defaults(func=_serve)

    verify = sub.add_parser("verify", help="verify proofs from a .jsonl file, a .lean file or a directory")
    from leanstep import verify_cli

    verify_cli.add_arguments(verify)
    verify.set_defaults(func=_verify)

    about = "print the model's raw tactic candidates for one goal, without checking them in Lean"
    generate = sub.add_parser("generate", help=about, description=about)
    config_mod.add_arguments(generate, ("generate",))
    generate.add_argument("--state", required=True, help="pretty-printed goal")
    generate.add_argument("--prefix", default="", help="the tactic prefix to complete")
    generate.set_defaults(func=_generate)

    bench = sub.add_parser("bench", help="run a benchmark from benchmarks/ and print its figures")
    bench.add_argument("name", choices=["all", *BENCHMARKS])
    bench.add_argument("--quick", action="store_true", help="small size (about a minute on 2 cores)")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the benchmark")
    bench.set_defaults(func=_bench)

    setup = sub.add_parser("setup", help="build the REPL and the llmstep tactic for a Lean workspace")
    setup.add_argument("--workspace", default=".", help="the Lean project (default: current directory)")
    setup.set_defaults(func=_setup)

    doctor = sub.add_parser("doctor", help="check dependencies, Lean, the REPL, the model and the server")
    config_mod.add_arguments(doctor, ("pool",))
    doctor.add_argument("--hf-model", dest="hf_model", default=None, help="model to check")
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
