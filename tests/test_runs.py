"""%runs: the run store seen from the notebook."""

import pytest

from trainorch_jupyter import api

from .jobs.helpers import run


def test_runs_lists_shows_logs_and_compares(healthy_pool):
    src = (
        "from trainorch_jupyter.runtime import report, rank\nimport torch\n"
        "for i in range(4):\n    report(step=i + 1, total=4, loss=SCALE / (i + 1))\n"
        "print('done on', rank())\n"
    )
    a = run(src.replace("SCALE", "1.0"))
    b = run(src.replace("SCALE", "2.0"))
    with pytest.raises(api.DistributedError):
        run("raise KeyError('missing')")
    failed = api.jobs()[-1]
    listing = api.runs(5)
    lines = listing.splitlines()
    assert lines[0].split()[:4] == ["id", "cell", "framework", "ranks"]
    assert lines[1].startswith(failed.id) and " failed " in lines[1]
    assert lines[2].startswith(b.id) and "loss=0.5" in lines[2] and " done " in lines[2]
    assert lines[3].startswith(a.id) and "loss=0.25" in lines[3]

    detail = api.run_detail(a.id[:6])  # a prefix is enough
    assert f"job {a.id} (distribute): torch on 2 ranks (gloo): done" in detail
    assert "last lines of rank 1:\n  done on 1" in detail
    assert "error: rank 0" in api.run_detail(failed.id) or "error: rank 1" in api.run_detail(failed.id)

    assert api.run_log(a.id, 1) == "done on 1\n"
    with pytest.raises(api.LaunchError, match="no rank 5"):
        api.run_log(a.id, 5)
    with pytest.raises(api.LaunchError, match="no job 'zzzz'"):
        api.run_detail("zzzz")

    text, history = api.run_compare([a.id, b.id])
    assert text.splitlines()[1].split() == ["loss", "0.25", "0.5"]
    assert [m["step"] for m in history[0]["metrics"]] == [1, 2, 3, 4]
