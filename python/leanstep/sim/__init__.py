"""Simulated Lean REPL for tests and benchmarks: ``python -m leanstep.sim``.

A real subprocess that speaks the exact framing and JSON shapes of
``leanprover-community/repl`` (see docs/repl-protocol.md) with a small deterministic toy
semantics, plus knobs for costs and faults.  Standard library only; nothing here is used
unless a caller starts it explicitly.

Framing (as the real REPL)
    Lines are read up to a blank line; each line's trailing whitespace is stripped and the
    lines are concatenated with no separator.  EOF with nothing accumulated: exit 0 (a request
    cut off by EOF is still answered).  Text starting with ``#`` or ``--``: skipped, no
    response.  Malformed JSON, or JSON that decodes as no request shape (dispatch order of the
    protocol doc §3.1; wrong field types such as ``"env": "3"``/``-1``/``"infotree": true``;
    non-objects; a lone blank line) prints ``uncaught exception: ...`` on stderr and exits 1.
    Unknown ``infotree`` strings are ignored.  A response is one JSON object (raw UTF-8, one
    key per line) followed by an empty line, flushed; it never contains an empty line.

Ids and requests
    ``env`` and ``proofState`` are independent counters from 0, never reused.  Every
    ``cmd``/``path`` allocates an env, even with errors; pickling an env echoes its id;
    unpickling an env allocates one.  Proof states are allocated per command in the order:
    sorries, then ``rootGoals`` entries, then ``allTactics`` entries; one per successful tactic
    step (after any ids of sorries inside it); one per proof-state pickle and unpickle.
    Errors: ``Unknown environment.`` (cmd/path/pickle env/unpickle proof state with a bad
    env), ``Unknown proof state.`` (tactic), ``Unknown proof State.`` (pickle proof state);
    a ``path`` that cannot be read gives ``{"message": "<reason> (error code: N)\\n  file: P"}``.
    Pickles are JSON files of this package's own format; a missing/corrupt/unwritable pickle
    is fatal like in the real REPL.  Proof states made by a command see the env from before
    that command (so names declared in the same text are unknown in tactic mode).

Header
    Only a request without ``env`` has a header: leading ``import X`` / ``public import X`` /
    ``prelude`` / ``module`` lines (blank lines and comments allowed).  A request with at
    least one import sleeps LEANSTEP_SIM_IMPORT_SECONDS.  A module whose name contains
    ``Nonexistent`` gives the error ``unknown module prefix 'X'...`` at its line (env still
    allocated).  ``import`` in a request with ``env`` gives ``invalid 'import' command, it must
    be used in the beginning of the file``.

Commands
    A command starts at column 0 (or at the first character of the body); lines starting with
    whitespace, ``|`` or a closing bracket continue the previous command.
    ``theorem|lemma|def|abbrev|instance|axiom|opaque NAME (binders) : TYPE := PROOF`` and
    ``example (binders) : TYPE := PROOF`` (modifiers and ``@[...]`` allowed) declare NAME
    (qualified by open ``namespace``s) in the new env; envs chain.  Redeclaring gives
    ``'NAME' has already been declared`` (the proof is not elaborated).  Binders become
    hypotheses (``[C]`` becomes ``inst✝ : C``); the goal is ``⊢ TYPE``, arithmetic spaced like
    Lean (``1+1=2`` -> ``1 + 1 = 2``).  ``structure|inductive|class NAME`` declare NAME;
    ``open``, ``set_option``, ``variable``, ``universe``, ``attribute``, ``section``/``end``...
    are accepted silently.  ``#print axioms N``, ``#print N``, ``#check E``, ``#eval E``
    give info messages at the keyword (``#eval`` computes closed arithmetic, with defs whose
    body is a literal arithmetic value substituted) (an unknown undotted identifier is an error
    ``Unknown identifier `x```); ``#exit`` warns and stops.  Any other first token:
    ``unexpected identifier; expected command`` / ``unexpected token 'x'; expected command``.
    Each theorem/lemma/example with a proof sleeps LEANSTEP_SIM_PROOF_SECONDS unless a
    ``-- sim: delay S`` directive is attached to it (then it sleeps S instead).
    ``#print axioms N`` prints ``'N' depends on axioms: [...]`` (sorted like Lean: fewer name
    components first) or ``'N' does not depend on any axioms``.  A declaration's axioms are
    the union of: propext, Classical.choice, Quot.sound for the "automation" closing
    tactics (simp, norm_num, decide, omega, linarith, ring, aesop, ...); Lean.ofReduceBool
    for native_decide; sorryAx if it used ``sorry`` or had an error; the axioms of every
    declared name its proof mentions (an ``axiom`` contributes itself).  rfl, trivial,
    exact, assumption and term proofs add nothing.

Truth
    A goal is *unprovable* when its target is a closed proposition that evaluates to false
    (integer literals, ``+ - * / % ^``, parentheses, ``= ≠ < > ≤ ≥``, ``¬ ∧ ∨ → ↔``, ``True``,
    ``False``, ascriptions to ℕ/ℤ/ℚ/ℝ; ℕ semantics with truncated subtraction and x/0 = 0
    unless ℤ or a unary minus appears) and no hypothesis evaluates to false; ``False`` is
    unprovable.  Every other goal (anything with a variable, say) is provable.
    ``by_contra`` keeps the provability of the original goal.  Nothing is ever evaluated with
    Python's eval.

Tactics (a ``by`` block: tactics separated by ``;`` or by newlines at the block's column;
more-indented lines continue a tactic; ``by``, ``=>``, ``·`` and the combinators below take
the rest of their tactic's text as a nested block)
    closing: rfl decide simp norm_num omega linarith nlinarith positivity ring aesop tauto
    trivial assumption contradiction native_decide simpa simp_all exact_mod_cast calc ...
    close the main goal if provable, else *throw* (``linarith failed ...``, ``Tactic `decide`
    proved that the proposition ... is false``, ``simp made no progress``, ...).  ``simp only``
    and any closer with ``at`` leave the goal unchanged.
    ``exact T``: ``sorry`` in T reports sorries; an undotted head identifier that is not a
    hypothesis, a declared name or a builtin (rfl, trivial, id, absurd, le_refl, this, ...)
    gives a *recovered* error ``Unknown identifier `x``` (goal closed, proof tainted); dotted
    names (``Nat.succ_le``, ``h.1``) are assumed to exist; on an unprovable goal it throws
    ``type mismatch`` unless T mentions a declared ``axiom``.
    ``sorry``/``admit`` close the goal with a sorry.  ``intro x`` (∀, →, ¬), ``intros``,
    ``rintro``, ``constructor``/``apply And.intro`` (∧ -> case left/right, ↔ -> mp/mpr),
    ``left``/``right`` (∨), ``exfalso``, ``by_contra h``, ``by_cases h : p`` (case pos/neg),
    ``induction x``/``cases x`` on a ℕ hypothesis (case zero/succ like Lean, also with
    ``with | zero => ... | succ n ih => ...``), ``apply h`` (h : A → B with B the target
    gives goal A), ``have h : T := PROOF`` (PROOF elaborated as a term, errors recovered),
    ``have h : T`` (new goal T first), ``show``/``change T``, ``done``, ``rcases h with a | b``
    and ``obtain ⟨a, b⟩ := h`` (one goal per ``|`` alternative, case inl/inr; the ∨/∧ parts
    of h's type become the named hypotheses; zero/succ on a ℕ variable).
    Progress tactics (skip rw simp_rw unfold push_neg ext use refine conv ...)
    leave the goal unchanged.  Structure: ``(tacs)``, ``{ tacs }``/``· tacs``/``focus`` (must
    close the goal, else a recovered ``unsolved goals`` error), ``try``, ``first | a | b``,
    ``repeat``, ``all_goals``, ``any_goals``, ``case tag =>``, ``next =>``, ``on_goal n =>``,
    ``t1 <;> t2``.  An unknown tactic word is a parse error ``unknown tactic``.  In command
    mode a thrown error is logged at the tactic and ends that ``by`` block; goals left at the
    end give ``unsolved goals\\n<goals>`` from ``by`` to the block's end; a parse error drops
    the declaration's other messages.  An explicit sorry is reported (goal, pos/endPos of the
    ``sorry`` token, fresh proofState) and warns ``declaration uses `sorry``` at the name (or
    the ``example`` keyword).  Messages use 1-based lines and code-point columns of the
    submitted text.  ``allTactics`` reports every non-combinator tactic that finished (goals
    before, ``usedConstants`` empty); ``infotree`` (any of full/tactics/original/substantive)
    gives TacticInfo nodes for the same tactics, nested by source range.

Tactic mode ``{"tactic", "proofState"}``
    The string must be one tactic: a second top-level tactic gives
    ``Lean error:\\n<input>:L:C: expected end of input`` (at the ``;`` or the next line), an
    unknown word ``Lean error:\\n<input>:1:1: unknown tactic`` (column = word start + 1); a
    thrown error gives ``Lean error:\\n<message>``; none of these allocate an id.  Otherwise a
    new proof state: ``proofStatus`` is ``Incomplete: open goals remain`` if goals remain,
    else ``Incomplete: contains sorry`` if this state or an ancestor used sorry or had a
    recovered error, else ``Completed``.  Messages are at 0:0; sorries have no positions.

Directives (faults and sandbox probes)
    In Lean text as a line comment ``-- sim: NAME ARG`` (applies when the command containing
    it, or the next command after it, runs; with no command, at the end of the request); in
    tactic mode or inside ``by`` blocks as the tactic ``sim_NAME ARG`` (leaves goals unchanged).
    delay S: sleep S seconds, answer normally.  hang: never answer.  crash: print
    ``INTERNAL PANIC ...`` on stderr and exit with status 134.  grow MB: allocate and keep MB
    of touched memory.  garbage: the response is replaced by a non-JSON line and a blank line.
    huge N: the response is one single line with an extra info message whose data is N ``x``.
    write PATH / connect HOST:PORT / fork N / bigfile MB: try to create a file, open a TCP
    connection (2 s timeout), start N children (they sleep until the simulator exits, at most
    10 s) or write an MB file in the cwd (deleted afterwards; SIGXFSZ ignored meanwhile), and
    report ``sim write PATH: ok`` / ``...: failed: <OSError>`` (and likewise) as an info
    message.  read PATH / remount PATH / signal PID / ptrace PID: try to read a byte of a file,
    make a read-only mount writable (``mount(2)`` with MS_REMOUNT|MS_BIND), pass the kernel's
    permission check for a signal (signal 0: nothing is sent) or attach to a process with
    PTRACE_SEIZE (detached at once), reported the same way.  identity: ``sim identity uid=R,E,S
    gid=R,E,S groups=[...] CapEff=... CapBnd=... NoNewPrivs=N`` (from ``/proc/self/status``).
    getenv NAME: ``sim getenv NAME: set`` or ``unset`` (the value is never echoed).  A malformed
    or unknown directive gives an error message.

Environment variables (seconds are floats, default 0)
    LEANSTEP_SIM_IMPORT_SECONDS (per request with imports, and per unpickle that re-imports),
    LEANSTEP_SIM_CMD_SECONDS (per cmd/path), LEANSTEP_SIM_TACTIC_SECONDS (per tactic request;
    with LEANSTEP_SIM_TACTIC_SIGMA > 0 it is the median of a lognormal with that log-sd, drawn
    once per tactic text, so a tactic costs the same on every REPL and every call),
    LEANSTEP_SIM_PROOF_SECONDS (per theorem/lemma/example proof), LEANSTEP_SIM_CRASH_AFTER=N
    (crash like ``crash`` when the Nth non-comment request arrives), LEANSTEP_SIM_MEM_PER_CMD_MB
    (memory kept per cmd/path, like the real REPL that never frees envs).
"""

__all__ = ["main"]


def main() -> int:
    """Run the simulator on this process's stdin/stdout."""
    from .repl import main as _main
    return _main()
