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


async def test_every_read_endpoint_answers_json(jp_fetch, tmp_path):
    from trainorch_jupyter.server.manager import TrainorchManager

    from tests.store.test_db import job_events

    from .fixtures import STUDY_JOB, VALID_JOB, study_events, validation_events

    st = TrainorchManager().store
    st.write_events(job_events("aaaaaa111111"))
    st.write_events(study_events())
    st.write_events(validation_events())
    with open(paths.rank_log("aaaaaa111111", 1), "w") as f:
        f.write("hello\nworld\n")

    async def get(*parts, **params):
        r = await jp_fetch("trainorch", "api", *parts, params=params)
        assert r.code == 200 and r.headers["Content-Type"].startswith("application/json")
        return json.loads(r.body)

    assert {j["id"] for j in await get("jobs")} == {"aaaaaa111111", STUDY_JOB, VALID_JOB}
    assert [j["id"] for j in await get("jobs", kind="validate")] == [VALID_JOB]
    assert (await get("jobs", "aaaaaa111111"))["ranks"][1]["state"] == "done"
    page = await get("jobs", "aaaaaa111111", "log", rank="1", offset="6", limit="100")
    assert page["text"] == "world\n" and page["eof"] and page["next_offset"] == 12
    assert [r["rank"] for r in (await get("jobs", "aaaaaa111111", "metrics"))["ranks"]] == [0, 1]
    assert (await get("studies"))[0]["best"]["number"] == 0
    assert [t["state"] for t in (await get("studies", STUDY_JOB))["trials"]] == ["COMPLETE", "PRUNED"]
    assert (await get("validations"))[0]["name"] == "digits-mlp"
    assert (await get("validations", "digits-mlp"))["passed"] is True
    assert (await get("pools"))["pools"] == []
    for parts, params, code in [
        (("jobs", "aaaaaa111111", "log"), {"rank": "x"}, 400),
        (("jobs", "..%2F..%2Fetc", "log"), {}, 400),
        (("jobs", "abcdef999999", "log"), {}, 404),
        (("studies", "abcdef999999"), {}, 404),
        (("validations", "nothing"), {}, 404),
    ]:
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("trainorch", "api", *parts, params=params)
        assert e.value.code == code, parts


async def test_pool_actions_become_requests_for_the_owning_kernel(jp_fetch):
    import os
    import socket
    import time

    from trainorch_jupyter.store import pools as poolstore
    from trainorch_jupyter.store.db import _process_start

    me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()), "kernel": ""}
    poolstore.write_record({"id": "0a0a0a0a", "state": "running", "owner": me, "started": time.time(),
                            "engines": [{"slot": 0, "engine": 3, "host": "h", "pid": None, "device": "cpu"}]})
    r = await jp_fetch("trainorch", "api", "pools", "0a0a0a0a", "restart", method="POST", body='{"engine": 3}')
    ask = json.loads(r.body)
    assert ask["engine"] == 3 and ask["action"] == "restart"
    [req] = poolstore.take_requests("0a0a0a0a")
    assert req["id"] == ask["request"] and req["args"] == {"engine": 3}
    poolstore.write_response("0a0a0a0a", req["id"], {"ok": True, "restarted": 3})
    r = await jp_fetch("trainorch", "api", "pools", "0a0a0a0a", "requests", req["id"])
    assert json.loads(r.body)["restarted"] == 3
    r = await jp_fetch("trainorch", "api", "pools", "0a0a0a0a", "stop", method="POST", body="")
    assert json.loads(r.body)["action"] == "stop"
    for body, code in (('{"engine": 99}', 400), ("[1]", 400), ("not json", 400)):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("trainorch", "api", "pools", "0a0a0a0a", "restart", method="POST", body=body)
        assert e.value.code == code
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("trainorch", "api", "pools", "0b0b0b0b", "stop", method="POST", body="{}")
    assert e.value.code == 404


async def test_actions_need_a_token_or_the_xsrf_token_with_a_cookie(jp_fetch, jp_serverapp):
    paths.job_dir("abcdef123456")
    # no credentials at all
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("trainorch", "api", "jobs", "abcdef123456", "stop", method="POST", body="{}",
                       headers={"Authorization": ""})
    assert e.value.code == 403
    # a browser-style request: logged-in cookie, but no XSRF token
    r = await jp_fetch("login", params={"next": "/"}, method="GET", headers={"Authorization": ""},
                       follow_redirects=False, raise_error=False)
    xsrf = [c for c in r.headers.get_list("Set-Cookie") if c.startswith("_xsrf=")]
    r = await jp_fetch("login", method="POST", body=f"password={jp_serverapp.identity_provider.token}"
                       f"&_xsrf={xsrf[0].split(';')[0].split('=', 1)[1]}",
                       headers={"Authorization": "", "Cookie": xsrf[0].split(";")[0]},
                       follow_redirects=False, raise_error=False)
    cookies = "; ".join(c.split(";")[0] for c in r.headers.get_list("Set-Cookie") + xsrf)
    assert "username-" in cookies, r.code
    ok = await jp_fetch("trainorch", "api", "jobs", headers={"Authorization": "", "Cookie": cookies})
    assert ok.code == 200  # the cookie logs in for reads
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("trainorch", "api", "jobs", "abcdef123456", "stop", method="POST", body="{}",
                       headers={"Authorization": "", "Cookie": cookies})
    assert e.value.code == 403  # ... but an action also needs the XSRF token
    token = xsrf[0].split(";")[0].split("=", 1)[1]
    r = await jp_fetch("trainorch", "api", "jobs", "abcdef123456", "stop", method="POST", body="{}",
                       headers={"Authorization": "", "Cookie": cookies, "X-XSRFToken": token})
    assert r.code == 200
