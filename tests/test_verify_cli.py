"""``leanstep verify``: .jsonl, .lean and directory inputs, local sim pool and --url, exit codes."""

from __future__ import annotations

import json

import pytest

from leanstep.verify_cli import main
from server_fixtures import running_server

LOCAL = ["--repl", "sim", "--sandbox", "none", "--max-repls", "2", "--no-progress"]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "proofs.jsonl"
    rows = [{"id": "ok", "code": "theorem a : 1 + 1 = 2 := by norm_num"},
            {"custom_id": "bad", "proof": "import Mathlib\ntheorem b : 1 + 1 = 3 := by norm_num"},
            {"id": "sorry", "code": "theorem c : True := by sorry"},
            {"id": "hang", "code": "theorem d : True := by\n  sim_hang"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return path


def read_results(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_with_a_local_pool(jsonl, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main([str(jsonl), "-o", str(out), "--timeout", "1", *LOCAL]) == 0
    results = read_results(out)
    assert [(r["id"], r["verdict"]) for r in results] == [("ok", "valid"), ("bad", "invalid"),
                                                           ("sorry", "invalid"), ("hang", "timeout")]
    assert results[1]["messages"][0]["pos"]["line"] == 2
    assert "4 proofs: 1 valid / 2 invalid / 0 error / 1 timeout" in capsys.readouterr().err


def test_lean_file_and_directory(tmp_path, capsys):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "A.lean").write_text("import Mathlib\ntheorem a : 2 + 2 = 4 := by norm_num\n")
    (tmp_path / "src" / "sub" / "B.lean").write_text("axiom x : False\ntheorem b : 1 = 2 := x.elim\n")
    assert main([str(tmp_path / "src" / "A.lean"), *LOCAL]) == 0
    single = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert single[0]["id"] == "A.lean" and single[0]["verdict"] == "valid"
    assert main([str(tmp_path / "src"), "--strict", *LOCAL]) == 0
    results = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["verdict"]) for r in results] == [("A.lean", "valid"), ("sub/B.lean", "invalid")]
    assert [r["code"] for r in results[1]["reasons"]] == ["forbidden:axiom"] and results[1]["trust"] == "strict"
    assert main([str(tmp_path / "src"), "--trust", "lenient", *LOCAL]) == 0  # no error, no sorry: valid there
    results = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["verdict"] for r in results] == ["valid", "valid"] and results[1]["trust"] == "lenient"


def test_strict_and_trust_that_disagree_are_a_usage_error(tmp_path, capsys):
    (tmp_path / "A.lean").write_text("theorem a : 2 + 2 = 4 := by norm_num\n")
    assert main([str(tmp_path / "A.lean"), "--strict", "--trust", "lenient", *LOCAL]) == 2
    assert "--trust lenient" in capsys.readouterr().err


def test_against_a_running_server(jsonl, capsys):
    with running_server() as srv:
        assert main([str(jsonl), "--url", srv.url, "--timeout", "1", "--batch-size", "2", "--no-progress"]) == 0
    results = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["verdict"] for r in results] == ["valid", "invalid", "invalid", "timeout"]


@pytest.mark.parametrize("content,message", [("{not json}\n", "proofs.jsonl:1: not JSON"),
                                             ('{"id": "x"}\n', "no `code`"), ("", "no snippets")])
def test_bad_input_is_a_usage_error(tmp_path, capsys, content, message):
    path = tmp_path / "proofs.jsonl"
    path.write_text(content)
    assert main([str(path), *LOCAL]) == 2
    assert message in capsys.readouterr().err


def test_missing_input_and_bad_flags(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl"), *LOCAL]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "a.lean").write_text("theorem a : True := trivial")
    assert main([str(tmp_path / "a.lean"), "--timeout", "0", *LOCAL]) == 2
    assert main([str(tmp_path / "a.lean"), "--repl", "lake", "--no-progress"]) == 2
    assert "workspace" in capsys.readouterr().err


def test_an_unreachable_server_is_exit_1_with_one_line_saying_so(jsonl, tmp_path, capsys, closed_port):
    out = tmp_path / "out.jsonl"
    url = f"http://127.0.0.1:{closed_port}"
    assert main([str(jsonl), "--url", url, "--retries", "0", "-o", str(out), "--no-progress"]) == 1
    message = capsys.readouterr().err.splitlines()[-1]
    assert message.startswith("leanstep verify: 4 of 4 proofs were not checked:") and str(closed_port) in message
    results = read_results(out)  # every proof still has its line, saying why it has no verdict
    assert [r["verdict"] for r in results] == ["error"] * 4 and all("request failed" in r["error"] for r in results)


def test_a_refused_key_is_exit_1_and_the_right_key_exit_0(jsonl, capsys, monkeypatch):
    monkeypatch.delenv("LEANSTEP_API_KEY", raising=False)
    with running_server(api_key="s3cret") as srv:
        base = [str(jsonl), "--url", srv.url, "--timeout", "1", "--no-progress"]
        assert main([*base, "--api-key", "wrong"]) == 1
        message = capsys.readouterr().err.splitlines()[-1]
        assert "4 of 4 proofs were not checked" in message and "401" in message and "invalid API key" in message
        assert main(base) == 1
        assert "missing API key" in capsys.readouterr().err.splitlines()[-1]
        assert main([*base, "--api-key", "s3cret"]) == 0


def test_retries_must_not_be_negative(jsonl, capsys):
    assert main([str(jsonl), "--url", "http://127.0.0.1:9", "--retries", "-1", "--no-progress"]) == 2
    assert "--retries" in capsys.readouterr().err
