"""A job of tasks (sklearn): progress from the job's own row; a text form without per-engine counts."""

from __future__ import annotations

from trainorch_jupyter import model
from trainorch_jupyter.model import JOB_ROW, Event
from trainorch_jupyter.views.panel import header_html
from trainorch_jupyter.views.text import status_text


def snapshot(per_engine: tuple[int, int]) -> model.Snapshot:
    evs = [
        Event("j", 0, model.JOB, None, {"framework": "sklearn", "backend": "joblib", "world_size": 2,
                                        "ranks": [{"rank": 0, "device": "cpu"}, {"rank": 1, "device": "cpu"}]}),
        Event("j", 1, model.STATUS, None, {"state": model.RUNNING}),
        Event("j", 2, model.METRIC, JOB_ROW, {"step": 0, "total": None}),
        Event("j", 3, model.METRIC, 1, {"step": per_engine[1]}),
        Event("j", 4, model.METRIC, JOB_ROW, {"step": sum(per_engine) - 1, "total": None}),
        Event("j", 5, model.METRIC, 0, {"step": per_engine[0]}),  # a rank's count never becomes the job's
        Event("j", 6, model.METRIC, JOB_ROW, {"step": sum(per_engine), "total": sum(per_engine)}),
        Event("j", 7, model.STATUS, None, {"state": model.DONE}),
    ]
    return model.reduce(evs)


def test_progress_is_the_jobs_own_row():
    snap = snapshot((7, 11))
    assert (snap.step, snap.total) == (18, 18)
    assert (snap.ranks[0].step, snap.ranks[1].step) == (7, 11)
    assert "tasks 18/18" in header_html(snap)


def test_the_text_form_does_not_depend_on_which_engine_ran_what():
    text = status_text(snapshot((7, 11)))
    assert text == status_text(snapshot((12, 6)))
    assert text.splitlines() == [
        "sklearn job on 2 engines (joblib): done, 18/18 tasks",
        "  rank  device  state",
        "  0     cpu     done",
        "  1     cpu     done",
    ]


def test_torch_jobs_are_unchanged():
    evs = [
        Event("t", 0, model.JOB, None, {"framework": "torch", "world_size": 2, "ranks": [{"rank": 0}, {"rank": 1}]}),
        Event("t", 1, model.METRIC, 1, {"step": 3, "total": 10}),
        Event("t", 2, model.METRIC, 0, {"step": 2, "total": 10}),
        Event("t", 3, model.METRIC, 1, {"step": 4, "total": 10}),
    ]
    snap = model.reduce(evs)
    assert (snap.step, snap.total) == (2, 10)  # rank 0's, as before
    assert status_text(snap).startswith("torch job on 2 ranks: pending")
