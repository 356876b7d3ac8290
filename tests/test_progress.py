"""The progress bar the commands share: what it draws with and without --no-progress."""

from __future__ import annotations

from leanstep.progress import Progress


def test_without_a_bar_lines_still_reach_stderr_and_nothing_else_is_drawn(capsys):
    with Progress(3, "file", "extract", enabled=False) as progress:
        progress.update(steps=7)
        progress.write("leanstep extract: a.lean: timeout")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "leanstep extract: a.lean: timeout\n"


def test_a_bar_counts_to_its_total_on_stderr_with_lines_and_figures_beside_it(capsys):
    with Progress(2, "goal", "prove") as progress:
        progress.write("a.lean:3:2: proved")
        progress.update(solved=1)
        progress.update(solved=2)
    out, err = capsys.readouterr()
    assert out == ""
    assert "a.lean:3:2: proved\n" in err
    final = err.rstrip().split("\r")[-1]
    assert final.startswith("prove: 100%") and "2/2" in final and "goal" in final and "solved=2" in final
