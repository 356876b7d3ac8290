"""The wire format: every JSON shape leanstep reads or writes, and nothing else.

One module per peer, so a peer's shapes change in one place and the domain
(``check``, ``suggest``) never learns a field name:

- ``kimina``: ``POST /verify`` and ``POST /api/check`` (the Kimina Lean Server's
  requests and result shapes, plus our ``verdict``), and the client's side of them;
- ``llmstep``: llmstep's ``POST /``;
- ``suggest``: our ``POST /suggest``;
- ``records``: our flat result record (``leanstep verify``'s JSONL line) and the
  snippet records read from files and Python callers;
- ``common``: what they share (strict models, field-naming errors, the error body, ``limits``).

The REPL's own JSON (messages, sorries, infotrees) is ``repl.protocol``'s; the
shapes here embed it unchanged, as Kimina does.
"""
