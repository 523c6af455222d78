"""The study view's pure components and its deterministic text form."""

from __future__ import annotations

from trainorch_jupyter import model
from trainorch_jupyter.model import Event, Snapshot
from trainorch_jupyter.views import tune as views


def _snap(direction: str = "maximize") -> Snapshot:
    snap = Snapshot()
    evs = [
        Event("abc", 0, model.JOB, None, {"kind": model.TUNE, "world_size": 2, "study": {
            "name": "s", "directions": [direction], "sampler": "tpe", "pruner": "median", "n_trials": 3}}),
        Event("abc", 1, model.STATUS, None, {"state": model.RUNNING}),
        Event("abc", 2, model.TRIAL_UPDATE, None, {"number": 0, "state": "RUNNING", "engine_id": 3,
                                                   "device": "cuda:0", "started": 100.0}),
        Event("abc", 3, model.TRIAL_UPDATE, None, {"number": 1, "state": "RUNNING", "engine_id": 4,
                                                   "device": "cuda:1", "started": 100.5}),
        Event("abc", 4, model.TRIAL_UPDATE, None, {"number": 0, "intermediate": {0: 0.5}, "params": {"lr": 0.1}}),
        Event("abc", 5, model.TRIAL_UPDATE, None, {"number": 0, "intermediate": {1: 0.7}}),
        Event("abc", 6, model.TRIAL_UPDATE, None, {"number": 0, "state": "COMPLETE", "value": 0.7,
                                                   "ended": 103.0}),
        Event("abc", 7, model.TRIAL_UPDATE, None, {"number": 1, "state": "PRUNED", "value": 0.2,
                                                   "params": {"lr": 0.5}, "intermediate": {0: 0.2}}),
        Event("abc", 8, model.TRIAL_UPDATE, None, {"number": 2, "state": "COMPLETE", "value": 0.9,
                                                   "params": {"lr": 0.01}}),
    ]
    for ev in evs:
        snap.apply(ev)
    return snap


def test_rows_merge_updates_and_keep_engine_and_device():
    rows = views.trial_rows(_snap())
    assert [r["number"] for r in rows] == [0, 1, 2]
    assert rows[0]["steps"] == 2 and rows[0]["last"] == (1, 0.7) and rows[0]["duration"] == 3.0
    assert (rows[0]["engine"], rows[0]["device"]) == (3, "cuda:0")
    assert rows[1]["state"] == "PRUNED" and rows[1]["device"] == "cuda:1"


def test_best_follows_the_direction():
    assert views.best_row(_snap("maximize"))["number"] == 2
    snap = _snap("minimize")
    assert views.best_row(snap)["number"] == 0  # pruned trials are never best


def test_text_form_is_deterministic_and_has_no_engines_or_times():
    text = views.study_text(_snap())
    assert text == (
        "study s (maximize; tpe sampler, median pruner): running\n"
        "  3 trials: 2 complete, 1 pruned\n"
        "  best: trial 2, value 0.9, lr=0.01\n"
        "  trial  state     value  steps  params\n"
        "  0      COMPLETE  0.7    2      lr=0.1\n"
        "  1      PRUNED    0.2    1      lr=0.5\n"
        "  2      COMPLETE  0.9    0      lr=0.01"
    )
    assert "cuda" not in text and "abc" not in text


def test_table_and_history_render():
    snap = _snap()
    table = views.trials_html(snap)
    assert table.count("<tr>") == 4 and "cuda:1" in table and "2 (step 1: 0.7)" in table
    svg = views.history_svg(snap)
    assert svg.count("<circle") == 2 and "trial 2: 0.9" in svg and "<polyline" in svg
    assert "appears when" in views.history_svg(Snapshot())
    assert "running" in views.study_header_html(snap) and "best <b>0.9</b>" in views.study_header_html(snap)


def test_the_widget_panel_shows_the_same_components():
    from trainorch_jupyter.views.tune import TunePanel

    snap = _snap()
    panel = TunePanel(snap)
    assert panel.update(snap, force=True)
    assert panel.table.value == views.trials_html(snap)
    assert panel.chart.value == views.history_svg(snap)
    assert "trainorch-stop" in panel.stop.value  # the panel's Stop control, for a running study
    snap.apply(Event("abc", 9, model.STATUS, None, {"state": model.DONE}))
    panel.update(snap, force=True)
    assert panel.stop.value == "" and "done" in panel.header.value
    bundle = panel.bundle(views.study_text(snap))
    assert bundle["text/plain"].startswith("study s (maximize")
