"""Proving: best-first search over proof sessions, whole proofs with repair, and evaluation (pass@k).

* ``prove.target``: where a proof goes (a statement, or a goal at a position) and how
  a proof is placed there and judged;
* ``prove.checking``: placed proofs checked by the verifier, first valid wins;
* ``prove.whole``: whole-proof generation and repair rounds;
* ``prove.prover``: one request, the strategies in turn, one answer (what ``/prove``,
  ``leanstep prove`` and the MCP tool call);
* ``prove.evaluate``: pass@k over a problem set (``leanstep eval``).

Nothing is imported here, so the configuration can read ``prove.strategy`` cheaply.
"""
