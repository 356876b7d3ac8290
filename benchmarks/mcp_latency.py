"""What the MCP door costs per call, beside the HTTP route for the same work.

One ``leanstep serve --repl sim --no-model`` (simulated REPL, every cost knob at
zero, so Lean costs nothing and what is left is the doors) and one ``leanstep
mcp`` over stdio with the same flags. Per call, median and 90th percentile of:

* ``verify`` of one proof: ``POST /verify``; MCP over HTTP in both protocol eras
  (``legacy``: the ``initialize`` handshake; ``modern``: the 2026 envelope); MCP
  over stdio. Distinct proofs (checked on a REPL) and a repeated one (answered
  from the result cache: the doors alone).
* eight tactics at one goal: one ``multi_attempt`` call (in parallel over the
  REPLs), against eight ``session_step`` calls one after another.
* the first chunk of a streamed (SSE) answer against its end, over ``/mcp``.

Clients are the official SDK's (``mcp.Client``) and ``requests``, each with a
warm connection. The figures and ratios are printed side by side from one run.

    python benchmarks/mcp_latency.py [--quick] [--calls N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SOURCE = "theorem t (n : Nat) : n + 0 = n := by\n  sorry\n"
TACTICS = ["rfl", "simp", "omega", "trivial", "decide", "bogus_a", "bogus_b", "norm_num"]


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="leanstep bench mcp", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="50 calls per figure")
    p.add_argument("--calls", type=int, default=None, help="calls per figure (default 200; quick 50)")
    p.add_argument("--json", default=None, help="write the figures here too")
    return p.parse_args(argv)


def proof(index: int | None) -> str:
    name = "same" if index is None else f"p{index}"
    return f"theorem {name} : 1 + 1 = 2 := by\n  norm_num"


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000}


def over_requests(url: str, calls: int) -> dict[str, dict[str, float]]:
    import requests

    out = {}
    with requests.Session() as http:
        for label, distinct in (("distinct", True), ("cached", False)):
            times = []
            for i in range(calls):
                body = {"codes": [{"custom_id": "a", "proof": proof(i if distinct else None)}]}
                started = time.perf_counter()
                answer = http.post(url + "/verify", json=body, timeout=60)
                times.append(time.perf_counter() - started)
                assert answer.json()["results"][0]["verdict"] == "valid", answer.text
            out[label] = summary(times)
    return out


async def _verify_calls(client: Any, calls: int, offset: int) -> dict[str, dict[str, float]]:
    out = {}
    for label, distinct in (("distinct", True), ("cached", False)):
        times = []
        for i in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("verify", {"code": proof(offset + i if distinct else None)})
            times.append(time.perf_counter() - started)
            assert result.structured_content["verdict"] == "valid", result
        out[label] = summary(times)
    return out


async def _attempts(client: Any, rounds: int) -> dict[str, dict[str, float]]:
    at = {"source": SOURCE, "position": {"line": 2, "column": 2}}
    multi, stepped = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        result = await client.call_tool("multi_attempt", {**at, "tactics": TACTICS})
        multi.append(time.perf_counter() - started)
        assert len(result.structured_content["attempts"]) == len(TACTICS)
        session = (await client.call_tool("session_start", {"code": SOURCE})).structured_content["id"]
        started = time.perf_counter()
        for tactic in TACTICS:
            await client.call_tool("session_step", {"session": session, "state": 0, "tactic": tactic})
        stepped.append(time.perf_counter() - started)
        await client.call_tool("session_close", {"session": session})
    return {"multi_attempt x8": summary(multi), "session_step x8, one by one": summary(stepped)}


def over_mcp(connect: Callable[[], Any], calls: int, offset: int, attempts: bool) -> dict[str, dict[str, float]]:
    import anyio

    async def run() -> dict[str, dict[str, float]]:
        async with connect() as client:
            await client.call_tool("verify", {"code": proof(None)})  # warm: the connection, the REPL, the cache
            out = await _verify_calls(client, calls, offset)
            if attempts:
                out.update(await _attempts(client, max(5, calls // 10)))
            return out

    return anyio.run(run)


def first_chunk(url: str, calls: int) -> dict[str, dict[str, float]]:
    """Time to the first byte of an SSE answer and to its end, for a tool call of about 0.2 s of Lean."""
    import requests

    slow = "theorem s{} : True := by\n  -- sim: delay 0.2\n  trivial"
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    first, end = [], []
    with requests.Session() as http:
        for i in range(max(5, calls // 10)):
            call = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": {"name": "verify", "arguments": {"code": slow.format(i)}}}
            started = time.perf_counter()
            with http.post(url + "/mcp", json=call, headers=headers, stream=True, timeout=60) as answer:
                chunks = answer.iter_content(chunk_size=None)
                body = next(chunks)
                first.append(time.perf_counter() - started)
                body += b"".join(chunks)
                end.append(time.perf_counter() - started)
                assert answer.headers["Content-Type"] == "text/event-stream" and b'"verdict":"valid"' in body, body
    return {"SSE first byte": summary(first), "SSE end": summary(end)}


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(argv or []))
    import httpx2
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    from benchmarks import common

    calls = args.calls or (50 if args.quick else 200)
    env = common.sim_environ()
    print("MCP latency benchmark (simulated REPL, zero Lean cost; 2 REPLs; shared machines make these noisy)")
    print(f"  {calls} calls per figure; machine: {common.machine_info()['cpus']} CPUs", flush=True)
    figures: dict[str, dict[str, dict[str, float]]] = {}
    with common.LeanstepServer(2, env=env) as server:
        figures["HTTP POST /verify"] = over_requests(server.url, calls)
        for era, mode in (("legacy", "legacy"), ("modern", "auto")):
            def connect(mode: str = mode) -> Any:
                http = httpx2.AsyncClient()
                return Client(streamable_http_client(server.url + "/mcp", http_client=http), mode=mode)

            figures[f"MCP over HTTP ({era})"] = over_mcp(connect, calls, 10_000 * (2 + len(figures)),
                                                         attempts=era == "legacy")
        figures["MCP over HTTP (legacy)"].update(first_chunk(server.url, calls))
    stdio = StdioServerParameters(command=sys.executable, env={**env, "PYTHONPATH": str(common.ROOT / "python")},
                                  args=["-m", "leanstep", "mcp", "--repl", "sim", "--no-model", "--max-repls", "2"])
    figures["MCP over stdio"] = over_mcp(lambda: Client(stdio), calls, 90_000, attempts=True)

    base = figures["HTTP POST /verify"]
    rows = []
    for door, results in figures.items():
        for what, s in results.items():
            ratio = s["median_ms"] / base[what]["median_ms"] if what in base else float("nan")
            rows.append([door, what, s["median_ms"], s["p90_ms"], ratio])
    common.print_table(rows, ["door", "call", "median ms", "p90 ms", "x HTTP /verify"])
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
