"""The REST handlers in a real Jupyter server (pytest-jupyter's jp_fetch)."""

import json

import pytest
from tornado.httpclient import HTTPClientError

from trainorch_jupyter.store import paths

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRAINORCH_DB", raising=False)
    return {"ServerApp": {"jpserver_extensions": {"trainorch_jupyter": True}}}


async def test_stop_endpoint(jp_fetch):
    paths.job_dir("abcdef123456")
    r = await jp_fetch("trainorch", "api", "jobs", "abcdef123456", "stop", method="POST", body="{}")
    assert r.code == 200 and json.loads(r.body) == {"job": "abcdef123456", "stop_requested": True}
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("trainorch", "api", "jobs", "abcdef999999", "stop", method="POST", body="{}")
    assert e.value.code == 404
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("trainorch", "api", "jobs", "not-an-id", "stop", method="POST", body="{}")
    assert e.value.code == 400


async def test_requests_without_a_token_are_refused(jp_fetch):
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("trainorch", "api", "jobs", headers={"Authorization": ""})
    assert e.value.code == 403
    r = await jp_fetch("trainorch", "api", "jobs")
    assert r.code == 200 and json.loads(r.body) == []
