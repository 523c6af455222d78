"""Thin authenticated REST handlers over :class:`TrainorchManager`."""

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

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            self.finish(json.dumps(fn(*args), default=str))
        except BadRequest as e:
            raise web.HTTPError(400, str(e)) from None
        except NotFound as e:
            raise web.HTTPError(404, str(e)) from None


class JobsHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        self._call(self.manager.jobs)


class JobHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        self._call(self.manager.job, job_id)


class StopHandler(_Base):
    @web.authenticated
    def post(self, job_id: str) -> None:  # XSRF is checked by APIHandler for POST
        user = getattr(self.current_user, "username", "") if self.current_user else ""
        self._call(self.manager.request_stop, job_id, user)


def setup_handlers(web_app: Any) -> None:
    base = url_path_join(web_app.settings["base_url"], "trainorch", "api")
    web_app.settings["trainorch_manager"] = TrainorchManager()
    web_app.add_handlers(".*$", [
        (url_path_join(base, "jobs"), JobsHandler),
        (url_path_join(base, "jobs", r"([^/]+)"), JobHandler),
        (url_path_join(base, "jobs", r"([^/]+)", "stop"), StopHandler),
    ])
