"""Jupyter server extension: a small REST API over the run store (and Stop)."""

from __future__ import annotations

from typing import Any


def load(serverapp: Any) -> None:
    from .handlers import setup_handlers

    setup_handlers(serverapp.web_app)
    serverapp.log.info("trainorch_jupyter server extension loaded")
