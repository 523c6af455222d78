"""Drive a real IPython kernel the way a notebook does (jupyter_client)."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

from jupyter_client.manager import start_new_kernel


@dataclass
class Result:
    status: str = ""
    ename: str = ""
    evalue: str = ""
    stdout: str = ""
    stderr: str = ""
    displays: list = field(default_factory=list)
    messages: list = field(default_factory=list)  # (arrival time, msg_type, size in bytes)
    others: list = field(default_factory=list)  # messages of other parents seen meanwhile
    raw: list = field(default_factory=list)  # this cell's messages, whole

    @property
    def text(self) -> str:
        return self.stdout + "".join(d.get("text/plain", "") for d in self.displays)


class Kernel:
    def __init__(self) -> None:
        self.km, self.kc = start_new_kernel(kernel_name="python3")

    def run(self, code: str, timeout: float = 120, on_start=None) -> Result:
        msg_id = self.kc.execute(code)
        res = Result()
        deadline = time.monotonic() + timeout
        started = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:80]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                res.others.append(msg)
                continue
            kind, content = msg["msg_type"], msg["content"]
            res.raw.append(msg)
            size = len(str(content))
            res.messages.append((time.monotonic(), kind, size))
            if kind == "status" and content["execution_state"] == "busy" and not started:
                started = True
                if on_start is not None:
                    on_start()
            elif kind == "stream":
                if content["name"] == "stdout":
                    res.stdout += content["text"]
                else:
                    res.stderr += content["text"]
            elif kind in ("display_data", "execute_result"):
                res.displays.append(content["data"])
            elif kind == "error":
                res.ename, res.evalue = content["ename"], content["evalue"]
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:  # a reply left over from before
            reply = self.kc.get_shell_msg(timeout=10)
        res.status = reply["content"]["status"]
        if res.status == "error" and not res.ename:
            # IPython reports a UsageError on stderr, not as an error message
            res.ename = reply["content"].get("ename", "")
            res.evalue = reply["content"].get("evalue", "")
        return res

    def ok(self, code: str, **kw) -> Result:
        res = self.run(code, **kw)
        assert res.status == "ok", f"{res.ename}: {res.evalue}\n{res.stdout}\n{res.stderr}"
        return res

    def pid(self) -> int:
        return int(self.ok("import os; print(os.getpid())").stdout.strip())

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=False)
        except Exception:
            self.km.shutdown_kernel(now=True)
