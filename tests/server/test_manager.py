"""The server extension's manager, without tornado."""

import json
import os

import pytest

from trainorch_jupyter.server.manager import BadRequest, NotFound, TrainorchManager
from trainorch_jupyter.store import paths


def test_stop_request_lands_in_the_job_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    job_dir = paths.job_dir("abcdef123456")
    m = TrainorchManager()
    assert m.request_stop("abcdef123456", "alice") == {"job": "abcdef123456", "stop_requested": True}
    with open(os.path.join(job_dir, "stop")) as f:
        assert json.load(f)["user"] == "alice"


def test_refuses_bad_ids_and_anything_outside_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path / "home"))
    m = TrainorchManager()
    for bad in ("../../etc", "ABC", "abc", "abcdef/../../x", ""):
        with pytest.raises(BadRequest):
            m.request_stop(bad)
    with pytest.raises(NotFound):
        m.request_stop("abcdef000000")  # well formed, but no such job
    assert not (tmp_path / "home" / "jobs" / "abcdef000000").exists()


def test_jobs_come_from_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    from tests.store.test_db import job_events

    m = TrainorchManager()
    m.store.write_events(job_events("aaaaaa111111"))
    assert [j["id"] for j in m.jobs()] == ["aaaaaa111111"]
    assert m.job("aaaaaa111111")["state"] == "done"
    with pytest.raises(NotFound):
        m.job("bbbbbb222222")
