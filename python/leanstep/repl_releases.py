"""Which revision of the Lean REPL (leanprover-community/repl) to build for which Lean version.

A REPL can only import ``.olean`` files written by the Lean it was built with,
and its source follows Lean's API, so each Lean release needs the REPL revision
made for it. The REPL repository tags one commit per Lean release, named like
the release (tag ``v4.9.0`` has ``lean-toolchain`` = ``leanprover/lean4:v4.9.0``);
a few releases were only ever a commit on its main branch, never tagged.

``REPL_RELEASES`` below was derived from a clone of the REPL repository by
``python -m leanstep.repl_releases derive CLONE`` (see :func:`derive`):

* every tag whose ``lean-toolchain`` names a Lean release (``vX.Y.Z`` or
  ``vX.Y.Z-rcN``), at the tag's commit;
* for a release no tag names, the last commit of the main branch's first-parent
  history whose ``lean-toolchain`` still named it.

Run it again after new REPL releases and paste its output over the table.
``leanstep setup`` looks a workspace's ``lean-toolchain`` up here, and asks the
REPL repository for a tag of that name when the table is older than the release.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_RELEASE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-rc(\d+))?")


@dataclass(frozen=True)
class ReplRelease:
    """The REPL commit to build for one Lean release; ``tag`` is None for an untagged commit."""

    lean: str  # "v4.9.0"
    commit: str
    tag: str | None
    date: str  # commit date, YYYY-MM-DD

    def describe(self) -> str:
        return f"{'tag ' + self.tag if self.tag else 'untagged commit'} {self.commit[:12]} ({self.date})"


def lean_release(toolchain: str) -> str | None:
    """``leanprover/lean4:v4.9.0`` (or ``v4.9.0``, ``leanprover/lean4:4.9.0``) -> ``v4.9.0``; None for a
    nightly, a PR build, ``stable`` or anything else that is not a numbered Lean release."""
    name = toolchain.strip()
    origin, _, version = name.rpartition(":")
    if origin not in ("", "leanprover/lean4"):
        return None
    match = _RELEASE.fullmatch(version)
    if match is None:
        return None
    major, minor, patch, rc = match.groups()
    return f"v{major}.{minor}.{patch}" + (f"-rc{rc}" if rc else "")


def _release_key(lean: str) -> tuple[int, int, int, int]:
    match = _RELEASE.fullmatch(lean)
    if match is None:
        raise ValueError(f"not a Lean release: {lean!r}")
    major, minor, patch, rc = match.groups()
    # a release candidate sorts before its release
    return int(major), int(minor), int(patch), int(rc) if rc else 1 << 30


def find_release(toolchain: str, table: tuple[ReplRelease, ...] | None = None) -> ReplRelease | None:
    """The table's REPL revision for the Lean release ``toolchain`` names, or None."""
    lean = lean_release(toolchain)
    return None if lean is None else next((r for r in (table or REPL_RELEASES) if r.lean == lean), None)


def supported_range(table: tuple[ReplRelease, ...] | None = None) -> str:
    """``v4.3.0 … v4.33.0-rc2 (67 releases)``: for messages."""
    rows = table or REPL_RELEASES
    return f"{rows[0].lean} … {rows[-1].lean} ({len(rows)} releases)"


# --------------------------------------------------------------------------- #
# Deriving the table


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(clone), *args], capture_output=True, text=True, check=True).stdout


def _toolchain_at(clone: Path, rev: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(clone), "show", f"{rev}:lean-toolchain"], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def derive(clone: Path, branch: str = "HEAD") -> tuple[ReplRelease, ...]:
    """The table, read from a clone of the REPL repository (tags, and ``branch``'s first-parent history)."""
    found: dict[str, ReplRelease] = {}
    for tag in _git(clone, "tag", "--list").split():
        toolchain = _toolchain_at(clone, tag)
        lean = None if toolchain is None else lean_release(toolchain)
        if lean is None:
            continue
        commit, date = _git(clone, "log", "-1", "--format=%H %cs", f"{tag}^{{commit}}").split()
        previous = found.get(lean)
        # two tags for one release (v4.25.0 and a re-tag): the one named exactly like it wins
        if previous is None or (tag == lean and previous.tag != lean):
            found[lean] = ReplRelease(lean, commit, tag, date)
    # Untagged releases: walk the first-parent history newest first; the first commit seen with a toolchain
    # is the last one that had it.
    for line in _git(clone, "log", "--first-parent", "--format=%H %cs", branch).splitlines():
        commit, date = line.split()
        toolchain = _toolchain_at(clone, commit)
        lean = None if toolchain is None else lean_release(toolchain)
        if lean is not None and lean not in found:
            found[lean] = ReplRelease(lean, commit, None, date)
    return tuple(sorted(found.values(), key=lambda r: _release_key(r.lean)))


def format_table(rows: tuple[ReplRelease, ...]) -> str:
    """The rows as the Python source of ``REPL_RELEASES``."""
    lines = ["REPL_RELEASES: tuple[ReplRelease, ...] = ("]
    lines += [f"    ReplRelease({r.lean!r}, {r.commit!r}, {r.tag!r}, {r.date!r})," for r in rows]
    lines.append(")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leanstep.repl_releases", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    derive_cmd = sub.add_parser("derive", help="print the table derived from a clone of the REPL repository")
    derive_cmd.add_argument("clone", type=Path, help="a full clone (tags and history) of leanprover-community/repl")
    derive_cmd.add_argument("--branch", default="HEAD", help="the main branch (default: the clone's HEAD)")
    args = parser.parse_args(argv)
    try:
        rows = derive(args.clone, args.branch)
    except subprocess.CalledProcessError as exc:
        print(f"error: git failed in {args.clone}: {(exc.stderr or '').strip()}", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


# Derived from leanprover-community/repl at 8948401ab4924499421c94b7facdfca5ff27d81d (2026-08-03).
# fmt: off
REPL_RELEASES: tuple[ReplRelease, ...] = (
    ReplRelease('v4.2.0-rc1', '464cece45ae7eaeea75eac628c8a1abed3e1636a', None, '2023-10-13'),
    ReplRelease('v4.2.0-rc3', '9a215113c782f375ddd8f7f5f146ebb6f5c06a70', None, '2023-10-19'),
    ReplRelease('v4.2.0-rc4', '53aa3e5f4c048e61e8d63ca47ddd300a1bacfe00', None, '2023-11-15'),
    ReplRelease('v4.3.0-rc2', '38365a7af6b1ff9fae8d54927adea5e33d5e77b7', None, '2023-11-28'),
    ReplRelease('v4.3.0', '07840547e29dc55e1be1758f4b279d0a72b549ed', 'v4.3.0', '2023-12-02'),
    ReplRelease('v4.4.0-rc1', '1836e958c9db8083a2db21af98916da50c34a606', 'v4.4.0-rc1', '2023-12-07'),
    ReplRelease('v4.4.0', '29ff369cab81067a004c005d01018212205fc2d7', 'v4.4.0', '2023-12-22'),
    ReplRelease('v4.5.0-rc1', 'fe95bc8907a17def92e119d55c4c87b9d63eefb2', None, '2024-02-01'),
    ReplRelease('v4.5.0', '8c2358bbce0193b13e159a1fd74b6182e2d10ce1', 'v4.5.0', '2024-02-02'),
    ReplRelease('v4.6.0-rc1', '66515025d9ccffa2be29718d31b816edd0675202', None, '2024-02-15'),
    ReplRelease('v4.6.0', 'c41bcf0f2dfa21f3460a6e4d2c113a8dc7c9cd55', 'v4.6.0', '2024-02-29'),
    ReplRelease('v4.7.0-rc1', 'c2f1b873bfa299fd4eb5a8d4f48fe1184fc235d3', 'v4.7.0-rc1', '2024-03-05'),
    ReplRelease('v4.7.0-rc2', '2ab7948163863ee222891653ac98941fe4f20e87', None, '2024-03-14'),
    ReplRelease('v4.7.0', '68ddd1058938719e261edd64f6c24ab2c8c42b1c', 'v4.7.0', '2024-04-04'),
    ReplRelease('v4.8.0-rc1', '88a0643592d35d20a279e416e839a1f4184444a1', None, '2024-05-23'),
    ReplRelease('v4.8.0', '439687b2465afa316dfc6bb49df9a8facbdfa15b', 'v4.8.0', '2024-06-06'),
    ReplRelease('v4.9.0-rc1', '7df77c0a1c9188ab58c76d4138a06ae5e0c32282', 'v4.9.0-rc1', '2024-06-07'),
    ReplRelease('v4.9.0', 'd920817f334e1d8d27c8ca35e52c736a8c8818b0', 'v4.9.0', '2024-07-01'),
    ReplRelease('v4.10.0-rc1', '37f85172abcf9e160089518913cb4114241a6970', 'v4.10.0-rc1', '2024-07-01'),
    ReplRelease('v4.10.0', '7201630ac21ba38f541bd90df03d2883f8c2c968', 'v4.10.0', '2024-07-31'),
    ReplRelease('v4.11.0-rc1', '75e798589b2a8a0eadcc55f7f9e4fa463ab4b398', 'v4.11.0-rc1', '2024-08-05'),
    ReplRelease('v4.11.0', '65f1337eab0c0c400143ce85ea9063bc20c83a45', None, '2024-11-01'),
    ReplRelease('v4.14.0-rc1', '29a9aae9d1f7b91202886a6ddf606c1b925d2ee2', None, '2024-11-04'),
    ReplRelease('v4.14.0', 'd7545ee63b5334ca70ac88c8768171526cf232fa', 'v4.14.0', '2024-12-02'),
    ReplRelease('v4.15.0-rc1', '008cfbcefc142be39203b362690cf8230f21a253', 'v4.15.0-rc1', '2025-01-08'),
    ReplRelease('v4.15.0', '21966799da3691a0912b5a15193585bd2dd7165d', 'v4.15.0', '2025-01-08'),
    ReplRelease('v4.16.0-rc2', '4d7e5727029eec0b2f198937455b33e8bd723102', 'v4.16.0-rc2', '2025-01-15'),
    ReplRelease('v4.16.0', 'eed8e6ff51e2c168e13d89e75015719e676bd9c9', 'v4.16.0', '2025-02-04'),
    ReplRelease('v4.17.0-rc1', '5a2a4bde614dc9b086b3ea7a21f8dc045427ba11', 'v4.17.0-rc1', '2025-02-04'),
    ReplRelease('v4.17.0', '54cec9dd2161798134dea17c2972b30cdb424b60', 'v4.17.0', '2025-03-03'),
    ReplRelease('v4.18.0-rc1', '41c62d2740574f9a016cac93922e53c8534a166d', 'v4.18.0-rc1', '2025-03-04'),
    ReplRelease('v4.18.0', '2f0a3cb876b045cc0fe550ca3a625bc479816739', 'v4.18.0', '2025-04-01'),
    ReplRelease('v4.19.0-rc2', '8dd9ea56040a4d3cc303cec3da98c6365627ba0a', 'v4.19.0-rc2', '2025-04-04'),
    ReplRelease('v4.19.0', '3b27c8543a48444ffab4077f47526d91849cca3d', 'v4.19.0', '2025-05-02'),
    ReplRelease('v4.20.1-rc1', '7ddf0a759465a83ffc2b9bbd4a47d0316943c5e1', None, '2025-06-04'),
    ReplRelease('v4.20.1', '8d025135c9f82143657dc476027d5c95aaed4db6', None, '2025-06-04'),
    ReplRelease('v4.21.0-rc3', 'ab9da2b867c54d709fa3720790ea7406606be28a', 'v4.21.0-rc3', '2025-06-04'),
    ReplRelease('v4.21.0', 'ebeaf409fc93d64d5a52652c87e74bfb64805a66', 'v4.21.0', '2025-06-30'),
    ReplRelease('v4.22.0-rc2', '59fbf5b8fb7adc8d93ff215d3836943df4c8c182', 'v4.22.0-rc2', '2025-07-01'),
    ReplRelease('v4.22.0-rc3', '8cca59562eabefce8494fb4600c4bbfa1c3b335b', None, '2025-07-04'),
    ReplRelease('v4.22.0-rc4', 'df02476107206bd7a576ee61aad92ed9cbe0943d', 'v4.22.0-rc4', '2025-07-24'),
    ReplRelease('v4.22.0', '4d1b3e126441016fbc3d8570b15afb87825feaa9', 'v4.22.0', '2025-08-14'),
    ReplRelease('v4.23.0-rc2', '8e951c49f202d47dba756cfffe8b918aedf1ea71', 'v4.23.0-rc2', '2025-08-15'),
    ReplRelease('v4.23.0', '2f8073af0a5e3a141fee075652790a2c19132516', None, '2025-09-15'),
    ReplRelease('v4.24.0-rc1', '593cb8808ece84ce45368eb45eed845732ab04d0', 'v4.24.0-rc1', '2025-09-15'),
    ReplRelease('v4.24.0', '8fff8552292860d349b459d6a811e6915671dc0d', 'v4.24.0', '2025-10-14'),
    ReplRelease('v4.25.0-rc1', 'ec9123ace75d192367c9c3c7031062a4b2710c2d', None, '2025-10-22'),
    ReplRelease('v4.25.0-rc2', 'ff72412bd0245ba19f98134ac1ffe2b5cfbf5c8d', 'v4.25.0-rc2', '2025-10-23'),
    ReplRelease('v4.25.0', 'c648c7bb2286503750bfa4d0aea283cc04c14f44', 'v4.25.0', '2025-11-17'),
    ReplRelease('v4.25.1', '218ce6c6dbbe37625e4b89f2c478e2a5379ee73b', 'v4.25.1', '2025-11-18'),
    ReplRelease('v4.26.0-rc1', '778b2f236ec95f414a7827b4c82fd7f0b29eb287', 'v4.26.0-rc1', '2025-11-19'),
    ReplRelease('v4.26.0-rc2', '0b64f4e06f90ae71a1e0616bb1a90d15494ea69f', 'v4.26.0-rc2', '2025-11-22'),
    ReplRelease('v4.26.0', 'a9a6f5bac483d65d08f6226e0ed653f03c479fb7', 'v4.26.0', '2025-12-13'),
    ReplRelease('v4.27.0-rc1', '6229f069de2ad7e91c9886f533b9877f717ada51', 'v4.27.0-rc1', '2025-12-15'),
    ReplRelease('v4.27.0', '0e9e6e2962ab0a51440513d9ee028c8aa66bb53b', 'v4.27.0', '2026-01-24'),
    ReplRelease('v4.28.0-rc1', '08ef67a0ce3606ff54b143bce6e7bb63af491e75', 'v4.28.0-rc1', '2026-01-27'),
    ReplRelease('v4.28.0', '527590ce2b9f3b5c4a9a1031e5b8fcfb909b9a4a', 'v4.28.0', '2026-02-17'),
    ReplRelease('v4.29.0-rc1', '650486298edd9fd4ef5e9aeb0ffd8f95a7a7841b', 'v4.29.0-rc1', '2026-02-18'),
    ReplRelease('v4.29.0-rc2', 'ffeacd2e56364ac93abcf05a602a19eb5b4ca06e', 'v4.29.0-rc2', '2026-02-25'),
    ReplRelease('v4.29.0-rc3', '34707c53124a7643bb04afec692847167b7fffea', 'v4.29.0-rc3', '2026-03-02'),
    ReplRelease('v4.29.0-rc4', 'd8f00857f4318cfc91b550a784c0324acc7ee496', 'v4.29.0-rc4', '2026-03-05'),
    ReplRelease('v4.29.0-rc6', '1d17a15a60811e58edfbf73e13a114537e999a41', 'v4.29.0-rc6', '2026-03-10'),
    ReplRelease('v4.29.0-rc7', '4e076d7719dec6435377fa407df195683546a7af', 'v4.29.0-rc7', '2026-03-24'),
    ReplRelease('v4.29.0-rc8', '58b77dfce4ed9ace93f758b959b122c59f7b98ee', 'v4.29.0-rc8', '2026-03-25'),
    ReplRelease('v4.29.0', '495777293cb9cc3c62787a8c11393da1a9dd9505', 'v4.29.0', '2026-03-31'),
    ReplRelease('v4.30.0-rc1', 'c9cde4d461fcf1d56e121bbe7d0c96a7ad40e492', 'v4.30.0-rc1', '2026-04-07'),
    ReplRelease('v4.30.0-rc2', 'f0a88bfca1fa6ac75e2a33d1678a3b67c90fb492', 'v4.30.0-rc2', '2026-04-18'),
    ReplRelease('v4.30.0', 'dde7dd4397951755f1f6c2b4b3a83a26911d63ad', 'v4.30.0', '2026-05-26'),
    ReplRelease('v4.31.0-rc1', 'a6c92b4efa7d62cfb3900f57c25070f21df095de', 'v4.31.0-rc1', '2026-06-02'),
    ReplRelease('v4.31.0-rc2', 'bccb197729bb0e733f12dded64b92ba00ed8ad6e', 'v4.31.0-rc2', '2026-06-08'),
    ReplRelease('v4.31.0', '0cc60263319308000bbaa5354427f775fe3dc7d0', 'v4.31.0', '2026-06-15'),
    ReplRelease('v4.32.0-rc1', '0157a5d0620cb0670636867743ad5abf551f5352', 'v4.32.0-rc1', '2026-06-19'),
    ReplRelease('v4.32.0', '68a3b3a059787a7db44fb1e6281e4a657efee470', 'v4.32.0', '2026-07-13'),
    ReplRelease('v4.33.0-rc1', '1d238373119fa7cdb72ed7c24f6723d135b5b5fc', 'v4.33.0-rc1', '2026-07-16'),
    ReplRelease('v4.33.0-rc2', '8948401ab4924499421c94b7facdfca5ff27d81d', 'v4.33.0-rc2', '2026-08-03'),
)
# fmt: on


if __name__ == "__main__":
    sys.exit(main())
