"""The panel's components are pure functions of a Snapshot."""

from trainorch_jupyter import model
from trainorch_jupyter.model import Event, reduce
from trainorch_jupyter.views import panel
from trainorch_jupyter.views.text import status_text


def snapshot(state=model.RUNNING):
    evs = [
        Event("abc123def456", 0, model.JOB, None, {"framework": "torch", "backend": "gloo", "world_size": 2,
              "ranks": [{"rank": 0, "host": "node1", "device": "cuda:0"}, {"rank": 1, "host": "node1", "device": "cuda:1"}]}),
        Event("abc123def456", 1, model.STATUS, None, {"state": model.RUNNING}),
        Event("abc123def456", 2, model.METRIC, 0, {"step": 5, "total": 10, "metrics": {"loss": 0.5}}),
        Event("abc123def456", 3, model.STATUS, 1, {"state": model.FAILED, "error": "ValueError: bad batch"}),
    ]
    if state != model.RUNNING:
        evs.append(Event("abc123def456", 4, model.STATUS, None, {"state": state, "error": "rank 1 failed"}))
    return reduce(evs)


def test_rank_rows_show_progress_and_a_failed_rank_in_red_with_its_error():
    rows = panel.rank_rows(snapshot())
    assert rows[0]["progress"] == "5/10" and rows[0]["metrics"] == "loss=0.5" and rows[0]["device"] == "cuda:0"
    assert rows[1]["state"] == "failed" and rows[1]["error"] == "ValueError: bad batch"
    assert rows[1]["colour"] == panel.STATE_COLOURS["failed"]


def test_header_stop_and_chart():
    snap = snapshot()
    head = panel.header_html(snap)
    assert "torch" in head and "abc123def456" in head and "running" in head and "ETA" in head
    assert "trainorch/api/jobs/abc123def456/stop" in panel.stop_html(snap.id, "running")
    assert panel.stop_html(snap.id, "done") == ""  # no Stop once the job has ended
    svg = panel.chart_svg({"loss": {0: [(1, 2.0), (2, 1.0)], 1: [(1, 2.5), (2, 0.5)]}})
    assert svg.count("<polyline") == 2 and "loss" in svg
    assert "report()" in panel.chart_svg({})


def test_log_tab_escapes_and_names_the_full_log():
    html = panel.log_html(["<b>not bold</b>"], "/home/u/.trainorch/jobs/x/rank-0.log")
    assert "&lt;b&gt;" in html and "rank-0.log" in html


def test_text_form_has_no_ids_hosts_or_times():
    text = status_text(snapshot(model.FAILED))
    assert "abc123def456" not in text and "node1" not in text
    assert text.splitlines()[0] == "torch job on 2 ranks (gloo): failed"
