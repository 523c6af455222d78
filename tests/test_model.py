from trainorch_jupyter import model
from trainorch_jupyter.model import Event, reduce


def _events():
    job = Event("j1", 0, model.JOB, None, {"framework": "torch", "world_size": 2, "backend": "gloo",
                                           "ranks": [{"rank": 0, "device": "cpu"}, {"rank": 1, "device": "cpu"}]})
    return [
        job,
        Event("j1", 1, model.STATUS, None, {"state": model.RUNNING}),
        Event("j1", 2, model.METRIC, 0, {"step": 1, "total": 4, "metrics": {"loss": 2.0}}),
        Event("j1", 3, model.METRIC, 1, {"step": 2, "total": 4, "metrics": {"loss": 1.5, "acc": 0.5}}),
        Event("j1", 4, model.OUTPUT, 1, {"stream": "stdout", "text": "a\nb\n"}),
        Event("j1", 5, model.STATUS, 1, {"state": model.FAILED, "error": "ValueError: x"}),
        Event("j1", 6, model.STATUS, None, {"state": model.FAILED, "error": "rank 1 failed"}),
    ]


def test_reduce_builds_job_and_rank_rows():
    snap = reduce(_events())
    assert snap.id == "j1" and snap.framework == "torch" and snap.world_size == 2
    assert snap.state == model.FAILED and snap.error == "rank 1 failed"
    assert snap.ranks[1].state == model.FAILED and snap.ranks[1].error == "ValueError: x"
    assert snap.ranks[1].metrics == {"loss": 1.5, "acc": 0.5} and snap.ranks[1].lines == 2
    # a rank still running when the job fails is marked with the job's final state
    assert snap.ranks[0].state == model.FAILED
    assert snap.step == 1 and snap.total == 4  # job progress follows rank 0


def test_reduce_is_order_independent_and_idempotent():
    evs = _events()
    assert reduce(reversed(evs)).to_json() == reduce(evs).to_json()
    snap = reduce(evs)
    for ev in evs:
        snap.apply(ev)  # replay: ignored by sequence number
    assert snap.to_json() == reduce(evs).to_json()


def test_to_json_lists_ranks_in_order():
    js = reduce(_events()).to_json()
    assert [r["rank"] for r in js["ranks"]] == [0, 1]
    assert js["kind"] == model.DISTRIBUTE
