"""Checked Lean code is arbitrary code: escape attempts from inside a worker fail for real.

Each attempt runs inside a pooled worker started through the same launcher
``leanstep serve`` uses (``make_pool``), with the simulated REPL as the
stand-in: its ``-- sim:`` directives make the system calls that checked code
would make (``#eval IO.Process.run ...``). When the test suite runs as root (as
CI does), this is the case that matters: the server is root, the REPL must not
be. Every mode the machine offers is covered; the summary line at the end of
the run says which ones ran.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
import requests

from conftest import ROOT, SANDBOX_MODES_COVERED
from server_fixtures import sim_repls, wait_for_idle_repls
from leanstep.config import load
from leanstep.repl.launch import SetupError, make_pool, sandbox_plan
from leanstep.repl.pool import ReplPool, Worker
from leanstep.repl.protocol import CommandRequest
from leanstep.repl.sandbox import CGROUP_PREFIX, _pids_cgroup_root, bwrap_usable, describe, reachable_by_others, \
    sweep_stale_cgroups

ISOLATING_MODES = ["bwrap", "rlimit"]
AS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- #
# A stand-in REPL for each mode


def _unprivileged_python() -> str | None:
    """An interpreter that a user with no rights can run (rlimit mode cannot hide directories as bwrap does)."""
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if not candidate or not os.path.exists(candidate):
            continue
        real = Path(os.path.realpath(candidate))
        prefix = real.parent.parent if real.parent.name == "bin" else real.parent
        if reachable_by_others(real) and reachable_by_others(prefix / "lib"):
            return candidate
    return None


@pytest.fixture(scope="module")
def world_readable_package() -> Iterator[Path]:
    """A copy of the ``leanstep`` package in a directory every user can read: rlimit mode cannot hide the
    directories above a checkout that others cannot search, so a REPL run there by an unprivileged user (the
    simulator, standard library only) and the server that would start it must import from such a copy."""
    where = Path(tempfile.mkdtemp(prefix="leanstep-package-copy-"))
    shutil.copytree(ROOT / "python" / "leanstep", where / "leanstep", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [where, *where.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def stand_in(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Config settings for a sim REPL in ``mode`` that an unprivileged user can run; skips with the reason otherwise."""
    mode = request.param
    if mode == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    settings: dict = {"repl": "sim", "sandbox": mode}
    if mode == "rlimit" and AS_ROOT:
        python = _unprivileged_python()
        if python is None:
            pytest.skip("rlimit mode as root needs a Python interpreter that an unprivileged user can run; none here")
        copy = request.getfixturevalue("world_readable_package")
        monkeypatch.setenv("PYTHONPATH", str(copy))
        settings["repl"] = f"{python} -m leanstep.sim"
    SANDBOX_MODES_COVERED.add(mode)
    return settings


def sandboxed_pool(stand_in: dict, **settings) -> ReplPool:
    return make_pool(load({"max_repls": 1, **stand_in, **settings}, environ={}))


def report(worker: Worker, directive: str) -> str:
    """Run one directive in ``worker`` as checked code would, and return the simulator's report."""
    response = worker.run(CommandRequest(f"-- sim: {directive}\ndef probe := 1", env=worker.header_env), 30)
    reports = [m.data for m in response.messages if m.data.startswith("sim ")]
    assert reports, f"no report from the simulator: {response}"
    return reports[0]


def probe(stand_in: dict, directive: str, **settings) -> str:
    with sandboxed_pool(stand_in, **settings) as pool, pool.acquire("") as worker:
        return report(worker, directive)


each_mode = pytest.mark.parametrize("stand_in", ISOLATING_MODES, indirect=True)


# --------------------------------------------------------------------------- #
# Who the REPL is


def identity_fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", text))


@each_mode
def test_the_repl_runs_without_root_and_without_any_capability(stand_in):
    fields = identity_fields(probe(stand_in, "identity"))
    uids = [int(u) for u in fields["uid"].split(",")]
    gids = [int(g) for g in fields["gid"].split(",")]
    assert 0 not in uids, fields  # real, effective and saved
    assert 0 not in gids, fields
    assert fields["groups"] == "[]", fields
    for capability_set in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(fields[capability_set], 16) == 0, (capability_set, fields)
    assert fields["NoNewPrivs"] == "1", fields


@pytest.mark.skipif(not AS_ROOT, reason="per-worker user ids are given only by a server running as root")
@pytest.mark.parametrize("stand_in", ISOLATING_MODES, indirect=True)
def test_each_worker_has_a_user_id_of_its_own(stand_in):
    with sandboxed_pool(stand_in, max_repls=2) as pool, pool.acquire("") as first, pool.acquire("") as second:
        uids = {identity_fields(report(w, "identity"))["uid"] for w in (first, second)}
    assert len(uids) == 2


# --------------------------------------------------------------------------- #
# The file system


@each_mode
def test_writing_into_a_directory_the_server_can_write_fails(stand_in):
    target = ROOT / f".escape-{uuid.uuid4().hex}"
    try:
        assert "failed" in probe(stand_in, f"write {target}")
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_under_bubblewrap_even_world_writable_places_are_read_only(request, monkeypatch):
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    target = Path(tempfile.gettempdir()) / f".escape-{uuid.uuid4().hex}"
    try:
        assert "failed" in probe({"repl": "sim", "sandbox": "bwrap"}, f"write {target}")
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_the_fallback_says_what_it_does_not_prevent():
    # Without bubblewrap only file permissions stop a write; the log line must not promise more.
    assert "prevented only by file permissions" in describe("rlimit")
    assert "/tmp stay writable" in describe("rlimit")


@each_mode
def test_writing_inside_the_worker_directory_works(stand_in):
    assert probe(stand_in, "write inside.txt").endswith(": ok")


@each_mode
def test_remounting_the_root_file_system_fails(stand_in):
    with sandboxed_pool(stand_in) as pool, pool.acquire("") as worker:
        assert "failed" in report(worker, "remount /")
        target = ROOT / f".escape-{uuid.uuid4().hex}"
        try:
            assert "failed" in report(worker, f"write {target}")
            assert not target.exists()
        finally:
            target.unlink(missing_ok=True)


@pytest.fixture
def root_only_secret() -> Iterator[Path]:
    """A file only its owner (the test's user) may read, in a directory everyone can search."""
    where = Path(tempfile.mkdtemp(prefix="leanstep-secret-"))
    where.chmod(0o755)
    secret = where / "secret"
    secret.write_text("not for checked code\n")
    secret.chmod(0o600)
    yield secret
    shutil.rmtree(where, ignore_errors=True)


@each_mode
def test_reading_files_only_their_owner_may_read_fails(stand_in, root_only_secret):
    with sandboxed_pool(stand_in) as pool, pool.acquire("") as worker:
        assert "failed" in report(worker, f"read {root_only_secret}")
        if Path("/etc/shadow").exists():
            assert "failed" in report(worker, "read /etc/shadow")


@pytest.mark.skipif(not AS_ROOT, reason="per-worker user ids are given only by a server running as root")
@pytest.mark.parametrize("stand_in", ISOLATING_MODES, indirect=True)
def test_a_worker_cannot_read_or_write_another_workers_directory(stand_in):
    with sandboxed_pool(stand_in, max_repls=2) as pool, pool.acquire("") as owner, pool.acquire("") as intruder:
        assert report(owner, "write secret.txt").endswith(": ok")
        assert (owner.workdir / "secret.txt").exists()
        assert "failed" in report(intruder, f"read {owner.workdir / 'secret.txt'}")
        assert "failed" in report(intruder, f"write {owner.workdir / 'planted.txt'}")
        assert not (owner.workdir / "planted.txt").exists()


# --------------------------------------------------------------------------- #
# Other processes, the network, resources


@each_mode
def test_signalling_the_server_fails(stand_in):
    assert "failed" in probe(stand_in, f"signal {os.getpid()}")


@each_mode
def test_tracing_the_server_fails(stand_in):
    assert "failed" in probe(stand_in, f"ptrace {os.getpid()}")


@each_mode
def test_no_network_connection_reaches_the_host(stand_in):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = probe(stand_in, f"connect 127.0.0.1:{port}")
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert "failed" in result


@each_mode
def test_process_count_is_limited(stand_in):
    started = int(re.search(r"started (\d+)", probe(stand_in, "fork 200", max_procs=32)).group(1))
    assert started < 200


@each_mode
def test_file_size_is_limited(stand_in):
    assert "failed" in probe(stand_in, "bigfile 64", max_file_mb=8)


@pytest.mark.parametrize("stand_in", [*ISOLATING_MODES, "none"], indirect=True)
def test_secrets_in_the_servers_environment_do_not_reach_checked_code(stand_in, monkeypatch):
    monkeypatch.setenv("LEANSTEP_API_KEY", "s3cret")
    monkeypatch.setenv("OPENAI_API_KEY", "s3cret")
    with sandboxed_pool(stand_in) as pool, pool.acquire("") as worker:
        assert report(worker, "getenv LEANSTEP_API_KEY").endswith(": unset")
        assert report(worker, "getenv OPENAI_API_KEY").endswith(": unset")
        assert report(worker, "getenv PATH").endswith(": set")


# --------------------------------------------------------------------------- #
# Refusing to run checked code as root


@pytest.mark.skipif(not AS_ROOT, reason="the refusal concerns a server running as root")
def test_a_repl_no_unprivileged_user_can_reach_is_refused_with_the_fix(tmp_path):
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    fake_repl = hidden / "repl"
    fake_repl.write_text("#!/bin/sh\nexit 0\n")
    fake_repl.chmod(0o700)
    config = load({"repl": str(fake_repl), "sandbox": "rlimit"}, environ={})
    with pytest.raises(SetupError) as refused:
        sandbox_plan(config)
    message = str(refused.value)
    assert str(fake_repl) in message and "--allow-root-repl" in message and "bubblewrap" in message
    accepted = sandbox_plan(load({"repl": str(fake_repl), "sandbox": "rlimit", "allow_root_repl": True}, environ={}))
    assert not accepted.unprivileged and "ROOT" in accepted.describe()


@pytest.mark.skipif(not AS_ROOT, reason="the refusal concerns a server running as root")
def test_serve_refuses_to_start_and_says_why(tmp_path):
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "repl").write_text("#!/bin/sh\nexit 0\n")
    (hidden / "repl").chmod(0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_")}
    result = subprocess.run([sys.executable, "-m", "leanstep", "serve", "--no-model", "--sandbox", "rlimit",
                             "--repl", str(hidden / "repl")], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "must not run as root" in result.stderr and "--allow-root-repl" in result.stderr


def test_bubblewrap_hides_what_it_does_not_need_to_show():
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    plan = sandbox_plan(load({"repl": "sim", "sandbox": "bwrap"}, environ={}))
    for mask in plan.masked:  # each hidden directory is one others could not search anyway
        assert not reachable_by_others(mask)
    assert plan.unprivileged


# --------------------------------------------------------------------------- #
# Nothing survives the server, nothing is left behind


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.mark.parametrize("stand_in", [*ISOLATING_MODES, "none"], indirect=True)
def test_no_repl_survives_a_killed_server(stand_in, tmp_path, monkeypatch):
    # a temporary directory of its own: another server's start-up on this machine would sweep the killed
    # server's worker directories before this test looks for them
    # (beside the system's, so that unprivileged workers can reach it as they reach the system's)
    private_tmp = Path(tempfile.mkdtemp(prefix="leanstep-test-tmp-", dir=tempfile.gettempdir()))
    private_tmp.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEANSTEP_")}
    # the server imports the checkout, or in rlimit mode as root the readable copy of it that stand_in put on
    # PYTHONPATH alone: the server hands its PYTHONPATH to the REPLs, and refuses to start when an unprivileged
    # user could not reach a directory on it (as with a checkout under a private temporary directory)
    if stand_in["sandbox"] != "rlimit" or not AS_ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), env.get("PYTHONPATH")]))
    env["TMPDIR"] = str(private_tmp)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "leanstep", "serve", "--no-model", "--port", str(port),
                                   "--max-repls", "2", "--warm-headers", "import A;;import B",
                                   "--repl", stand_in["repl"], "--sandbox", stand_in["sandbox"]],
                                  env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_idle_repls(server, url, 2, log_path)
        deadline = time.monotonic() + 60
        hanging = subprocess.Popen([sys.executable, "-c", (
            "import requests, sys; requests.post(sys.argv[1] + '/verify', timeout=60, json={'codes': "
            "[{'custom_id': 'h', 'proof': 'import A\\n-- sim: hang\\ntheorem t : 1 = 1 := rfl'}], 'timeout': 60})"),
            url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while requests.get(url + "/health", timeout=2).json()["pool"]["workers"].get("busy", 0) < 1:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        repls = descendants(server.pid)
        assert repls
        server.kill()
        server.wait(10)
        hanging.kill()
        hanging.wait(10)
        _, alive = psutil.wait_procs(repls, timeout=10)
        assert not alive, f"processes outlived the killed server: {[(p.pid, p.name()) for p in alive]}"
        # what it could not clean up, the next server does
        left = set(Path(tempfile.gettempdir()).glob(f"leanstep-worker-{server.pid}-*"))
        assert left, "the killed server's worker directories should still be there"
        make_pool(load({"repl": "sim", "sandbox": "none"}, environ={})).shutdown()
        assert not any(path.exists() for path in left)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(private_tmp, ignore_errors=True)


def leanstep_cgroups() -> set[Path]:
    root = _pids_cgroup_root()
    return set() if root is None else {p for p in root.glob(f"{CGROUP_PREFIX}{os.getpid()}-*")}


def worker_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"leanstep-worker-{os.getpid()}-*"))  # this run's pools only


@each_mode
def test_timeouts_crashes_and_recycling_leave_nothing_behind(stand_in):
    dirs_before, cgroups_before = worker_dirs(), leanstep_cgroups()
    with ExitStack() as stack:
        pool = stack.enter_context(sandboxed_pool(stand_in, max_repls=2, max_uses=3))
        for directive, timeout in [("hang", 0.5), ("crash", 30), ("fork 5", 30), ("fork 5", 30), ("delay 0", 30),
                                   ("fork 3", 30), ("hang", 0.5)]:
            with pool.acquire("") as worker:
                try:
                    worker.run(CommandRequest(f"-- sim: {directive}\ndef x := 1", env=worker.header_env), timeout)
                except Exception:  # the timeout and the crash are the point
                    pass
            pool.wait_warm(30)
        counters = pool.stats().counters
        pids = pool.pids()
    assert counters.timeouts == 2 and counters.lost == 1 and counters.recycled_uses >= 1
    assert worker_dirs() - dirs_before == set()
    assert leanstep_cgroups() - cgroups_before == set()
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)
    assert not alive
    assert not sim_repls(psutil.Process())


def test_cgroups_left_by_a_killed_server_are_removed_by_the_next():
    root = _pids_cgroup_root()
    if root is None:
        pytest.skip("no writable pids cgroup hierarchy here (not root, or cgroups not mounted)")
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = root / f"{CGROUP_PREFIX}{gone.pid}-leanstep-worker-stale"
    stale.mkdir()

    def join() -> None:
        with open(stale / "cgroup.procs", "w") as procs:
            procs.write(str(os.getpid()))

    orphan = subprocess.Popen(["sleep", "60"], preexec_fn=join)
    try:
        assert sweep_stale_cgroups() >= 1
        assert orphan.wait(5) == -signal.SIGKILL
        assert not stale.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        if stale.exists():
            stale.rmdir()


def test_sandboxed_replacements_started_in_the_background_survive():
    # bwrap --die-with-parent kills a REPL when the *thread* that started it exits; the pool
    # starts every REPL from one long-lived thread, so recycled workers keep running.
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    config = load({"repl": "sim", "max_repls": 1, "sandbox": "bwrap", "max_uses": 2}, environ={})
    with make_pool(config) as pool:
        for i in range(6):
            with pool.acquire("") as worker:
                response = worker.run(CommandRequest(f"def x{i} := {i}", env=worker.header_env), 30)
                assert not response.errors
            pool.wait_warm(30)
        counters = pool.stats().counters
    assert counters.recycled_uses >= 2 and counters.lost == 0


def test_the_sandbox_works_when_the_repl_lives_under_a_private_tmp_directory(tmp_path):
    # Checkouts, virtualenvs and Lean toolchains may live under /tmp, in directories only their owner can search.
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    from leanstep.repl.process import ReplProcess
    from leanstep.repl.sandbox import SandboxPolicy, plan_sandbox

    tmp_path.chmod(0o755)  # the toolchain's own tree is readable; a parent (pytest's) is private to root
    python = tmp_path / "bin" / "python-under-tmp"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin"}
    plan = plan_sandbox([str(python), "-m", "leanstep.sim"], cwd=None, env=env, policy=SandboxPolicy("bwrap"),
                        workdir_parent=tmp_path)
    with ReplProcess(plan.launch(workdir), name="tmp-repl") as repl:
        assert repl.send(CommandRequest("def f := 1"), timeout=30).env == 0


def test_a_repl_deep_under_a_private_directory_reads_its_own_files(tmp_path):
    """bwrap hides a private directory behind a tmpfs and binds back what the REPL needs: every link on the way to
    its interpreter, and the directories it makes on the way must let the REPL (not root) through, or a checkout in
    `mktemp -d` cannot run its own virtualenv or import its own code."""
    if not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here (apt-get install bubblewrap)")
    from leanstep.repl.process import ReplProcess
    from leanstep.repl.sandbox import SandboxPolicy, plan_sandbox

    tmp_path.chmod(0o755)  # the workers' directories go here
    private = Path(tempfile.mkdtemp(prefix="leanstep-private-"))  # 0700, as `mktemp -d` makes it
    try:
        home = private / "checkout" / "tools"
        home.mkdir(parents=True)
        (home / "answer.txt").write_text("7")
        repl = home / "repl.py"  # answers every command with the env id it reads from the file beside it
        repl.write_text("import json, pathlib, sys\n"
                        "env = int((pathlib.Path(__file__).parent / 'answer.txt').read_text())\n"
                        "for line in sys.stdin:\n"
                        "    if not line.strip():\n"
                        "        print(json.dumps({'env': env}) + '\\n', flush=True)\n")
        venv_python = private / "checkout" / "venv" / "bin" / "python"  # a virtualenv's link to the interpreter
        venv_python.parent.mkdir(parents=True)
        venv_python.symlink_to(sys.executable)
        python = tmp_path / "python"  # and a link to that link, from where anyone can read
        python.symlink_to(venv_python)
        for path in (private / "checkout", home, repl, home / "answer.txt", *venv_python.parents):
            if private in path.parents:
                path.chmod(0o755 if path.is_dir() else 0o644)
        plan = plan_sandbox([str(python), str(repl)], cwd=None, env={"PATH": "/usr/bin:/bin"},
                            policy=SandboxPolicy("bwrap"), workdir_parent=tmp_path)
        assert private in plan.masked
        workdir = tmp_path / "work"
        workdir.mkdir()
        with ReplProcess(plan.launch(workdir), name="private-repl") as process:
            assert process.send(CommandRequest("def f := 1"), timeout=30).env == 7
    finally:
        shutil.rmtree(private, ignore_errors=True)


# --------------------------------------------------------------------------- #
# What the operator is told


def test_doctor_reports_the_mode_and_whether_repls_run_unprivileged():
    from leanstep.doctor import sandbox_check

    none = sandbox_check(load({"repl": "sim", "sandbox": "none"}, environ={}))
    assert none.status == "warn" and "no isolation" in none.detail
    if bwrap_usable():
        bwrap = sandbox_check(load({"repl": "sim", "sandbox": "bwrap"}, environ={}))
        assert bwrap.status == "ok" and "unprivileged" in bwrap.detail
    unconfigured = sandbox_check(load({"repl": "lake"}, environ={}))
    assert unconfigured.status == "warn" and "--workspace" in unconfigured.fix


@pytest.mark.skipif(not AS_ROOT, reason="the refusal concerns a server running as root")
def test_doctor_fails_the_sandbox_row_when_serve_would_refuse(tmp_path):
    from leanstep.doctor import sandbox_check

    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "repl").write_text("#!/bin/sh\nexit 0\n")
    (hidden / "repl").chmod(0o700)
    row = sandbox_check(load({"repl": str(hidden / "repl"), "sandbox": "rlimit"}, environ={}))
    assert row.status == "fail" and "--allow-root-repl" in row.fix
