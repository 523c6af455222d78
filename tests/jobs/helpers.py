import textwrap

from trainorch_jupyter import api


def run(src, ns=None, **kw):
    """Run a cell on the shared pool, collecting what it would print."""
    lines = []
    kw.setdefault("log", lines.append)
    job = api.distribute(textwrap.dedent(src), namespace={} if ns is None else ns, **kw)
    job.printed = "\n".join(lines)
    return job


def main_ns():
    """A namespace like a notebook's: functions defined in it belong to __main__."""
    return {"__name__": "__main__"}
