"""Thin authenticated REST handlers over :class:`TrainorchManager`.

Everything lives under ``{base_url}trainorch/api/``.  Reads are GET; actions
are POST, for which ``APIHandler`` checks the XSRF token (a browser request
without it is refused).  Every handler requires a logged-in user
(``@web.authenticated``: a token or the login cookie).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .manager import BadRequest, NotFound, TrainorchManager


class _Base(APIHandler):
    @property
    def manager(self) -> TrainorchManager:
        return self.settings["trainorch_manager"]

    @property
    def user_name(self) -> str:
        return getattr(self.current_user, "username", "") if self.current_user else ""

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            result = fn(*args, **kwargs)
        except BadRequest as e:
            raise web.HTTPError(400, str(e)) from None
        except NotFound as e:
            raise web.HTTPError(404, str(e)) from None
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(result, default=str))

    def _body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body


class PoolsHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        self._call(self.manager.pools)


class PoolActionHandler(_Base):
    @web.authenticated
    def post(self, pool_id: str, action: str) -> None:
        body = self._body()
        self._call(self.manager.pool_action, pool_id, action, body.get("engine"), self.user_name)


class PoolResponseHandler(_Base):
    @web.authenticated
    def get(self, pool_id: str, request_id: str) -> None:
        self._call(self.manager.pool_response, pool_id, request_id)


class JobsHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        self._call(self.manager.jobs, self.get_argument("limit", None), self.get_argument("kind", None))


class JobHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        self._call(self.manager.job, job_id)


class JobLogHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        self._call(self.manager.job_log, job_id, self.get_argument("rank", "0"),
                   self.get_argument("offset", None), self.get_argument("limit", None))


class JobMetricsHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        self._call(self.manager.job_metrics, job_id, self.get_argument("after", None))


class StopHandler(_Base):
    @web.authenticated
    def post(self, job_id: str) -> None:  # XSRF is checked by APIHandler for POST
        self._call(self.manager.request_stop, job_id, self.user_name)


class StudiesHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        self._call(self.manager.studies, self.get_argument("limit", None))


class StudyHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        self._call(self.manager.study, job_id)


class ValidationsHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        self._call(self.manager.validations, self.get_argument("limit", None))


class ValidationHandler(_Base):
    @web.authenticated
    def get(self, key: str) -> None:
        self._call(self.manager.validation, key)


def setup_handlers(web_app: Any) -> None:
    base = url_path_join(web_app.settings["base_url"], "trainorch", "api")
    web_app.settings["trainorch_manager"] = TrainorchManager()
    seg = r"([^/]+)"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "pools"), PoolsHandler),
        (url_path_join(base, "pools", seg, r"(stop|restart)"), PoolActionHandler),
        (url_path_join(base, "pools", seg, "requests", seg), PoolResponseHandler),
        (url_path_join(base, "jobs"), JobsHandler),
        (url_path_join(base, "jobs", seg), JobHandler),
        (url_path_join(base, "jobs", seg, "log"), JobLogHandler),
        (url_path_join(base, "jobs", seg, "metrics"), JobMetricsHandler),
        (url_path_join(base, "jobs", seg, "stop"), StopHandler),
        (url_path_join(base, "studies"), StudiesHandler),
        (url_path_join(base, "studies", seg), StudyHandler),
        (url_path_join(base, "validations"), ValidationsHandler),
        (url_path_join(base, "validations", seg), ValidationHandler),
    ])
