"""%%distribute on a real 2-engine pool with a real gloo process group."""


import numpy as np
import pytest

from trainorch_jupyter import api, model

from .helpers import main_ns, run


def test_every_rank_has_env_and_an_initialised_group(healthy_pool):
    ns = {}
    job = run(
        """
        import os, torch, torch.distributed as dist
        from trainorch_jupyter.runtime import rank, world_size, local_rank, device
        t = torch.tensor([float(rank() + 1)])
        dist.all_reduce(t)
        info = dict(rank=rank(), world=world_size(), local=local_rank(), device=str(device),
                    env={k: os.environ[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")},
                    sum=t.item(), initialised=dist.is_initialized(), backend=dist.get_backend())
        """,
        ns,
        gather=["info"],
    )
    info = ns["info"]
    assert [i["rank"] for i in info] == [0, 1] and all(i["world"] == 2 for i in info)
    assert [i["env"]["RANK"] for i in info] == ["0", "1"]
    assert all(i["sum"] == 3.0 and i["initialised"] and i["backend"] == "gloo" for i in info)
    assert all(i["device"] == "cpu" for i in info)
    # the rendezvous address is rank 0's, as its engine sees it, on a port free there
    addr = {i["env"]["MASTER_ADDR"] for i in info}
    assert addr == {healthy_pool.slots[0].ip}
    assert len({i["env"]["MASTER_PORT"] for i in info}) == 1
    assert job.state == model.DONE


def test_group_persists_across_cells_and_names_stay(healthy_pool):
    ns = {}
    run("import torch.distributed as dist\nmarker = id(dist.group.WORLD)\ncounter = 1", ns, gather=["marker"])
    first = ns["marker"]
    run("import torch.distributed as dist\nmarker = id(dist.group.WORLD)\ncounter += 1", ns, gather=["marker", "counter"])
    assert ns["marker"] == first  # same process group object: not re-created
    assert ns["counter"] == [2, 2]  # names defined by the previous cell are still there


def test_pull_unwraps_ddp_and_gather_is_rank_ordered(healthy_pool):
    ns = {}
    run(
        """
        import torch
        from torch.nn.parallel import DistributedDataParallel as DDP
        from trainorch_jupyter.runtime import rank
        torch.manual_seed(0)
        model = DDP(torch.nn.Linear(4, 2))
        weights = {"w": model.module.weight.detach().clone()}
        r = rank() * 10
        """,
        ns,
        pull=["model", "weights"],
        gather=["r"],
    )
    import torch

    assert isinstance(ns["model"], torch.nn.Linear)  # not DDP
    assert ns["model"].weight.device.type == "cpu"
    assert torch.equal(ns["weights"]["w"], ns["model"].weight.detach())
    assert ns["r"] == [0, 10]


def test_cell_functions_work_in_dataloader_workers(healthy_pool):
    ns = {}
    run(
        """
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        def collate(batch):
            xs = torch.stack([b[0] for b in batch])
            return xs * 2

        class Doubler:
            def __call__(self, x):
                return x * 2

        loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4, num_workers=2, collate_fn=collate)
        total = float(sum(b.sum() for b in loader))
        doubled = Doubler()(21)
        """,
        ns,
        pull=["total", "doubled"],
    )
    assert ns["total"] == 56.0 and ns["doubled"] == 42


def test_push_function_from_kernel_and_broadcast_array(healthy_pool):
    ns = main_ns()
    exec("def scale(x):\n    return x * 3\n", ns)
    ns["arr"] = np.arange(1_000_000, dtype=np.float64)
    run("out = scale(2)\ns = float(arr.sum())", ns, push=["scale", "arr"], gather=["out", "s"])
    assert ns["out"] == [6, 6]
    assert ns["s"] == [float(np.arange(1_000_000).sum())] * 2


def test_ten_thousand_reports_arrive_all_in_order(healthy_pool):
    seen = {0: [], 1: []}
    job = run(
        """
        from trainorch_jupyter.runtime import report
        for i in range(10_000):
            report(step=i + 1, total=10_000, value=i)
        """,
        bg=True,
    )
    job.subscribe(lambda ev: ev.kind == model.METRIC and seen[ev.rank].append(ev.data["seq"]))
    job.wait()
    for r in (0, 1):
        assert job.reports_received(r) == 10_000
        assert job.lost_reports[r] == 0
        assert job.snapshot.ranks[r].step == 10_000
        assert job.snapshot.ranks[r].metrics["value"] == 9999.0
    # the events the job kept are exactly 0..9999 per rank, in order
    for r in (0, 1):
        seqs = [ev.data["seq"] for ev in job.events if ev.kind == model.METRIC and ev.rank == r]
        assert seqs == list(range(10_000))


def test_output_is_labelled_and_kept_in_rank_logs(healthy_pool):
    job = run(
        """
        import sys
        from trainorch_jupyter.runtime import rank
        for i in range(3):
            print(f"line {i} from {rank()}")
        print("to stderr", file=sys.stderr)
        """
    )
    assert "[rank 0] line 0 from 0" in job.printed and "[rank 1] line 2 from 1" in job.printed
    for r in (0, 1):
        text = job.output(r)
        assert [f"line {i} from {r}" in text for i in range(3)] == [True] * 3
        assert "to stderr" in text
        assert job.logs.paths[r].endswith(f"jobs/{job.id}/rank-{r}.log")


def test_subset_of_engines(healthy_pool):
    ns = {}
    run("import torch.distributed as dist\nws = dist.get_world_size()", ns, n=1, gather=["ws"])
    assert ns["ws"] == [1]
    run("import torch.distributed as dist\nws = dist.get_world_size()", ns, gather=["ws"])
    assert ns["ws"] == [2, 2]


def test_plain_python_cell_without_framework(healthy_pool):
    ns = {}
    job = run("from trainorch_jupyter.runtime import rank\nv = rank() + 100", ns, gather=["v"])
    assert ns["v"] == [100, 101] and job.snapshot.framework == ""


def test_status_text_is_deterministic(healthy_pool):
    from trainorch_jupyter.views.text import status_text

    src = "from trainorch_jupyter.runtime import report\nimport torch\nreport(step=3, total=3, loss=0.123456)"
    a, b = run(src), run(src)
    assert status_text(a.snapshot) == status_text(b.snapshot)
    assert status_text(a.snapshot).splitlines()[0] == "torch job on 2 ranks (gloo): done"
    assert "loss=0.1235" in status_text(a.snapshot)
    assert a.id not in status_text(a.snapshot)


def test_a_second_job_while_one_runs_in_the_background_is_refused(healthy_pool):
    job = run("import time\ntime.sleep(30)", bg=True)
    try:
        with pytest.raises(api.LaunchError, match=f"job {job.id} is still running"):
            run("x = 1")
    finally:
        job.cancel()
    assert job.state == model.CANCELLED
    run("x = 1")


def test_report_from_dataloader_workers_is_ignored_not_corrupting(healthy_pool):
    job = run(
        """
        import torch
        from torch.utils.data import DataLoader
        from trainorch_jupyter.runtime import report

        def collate(batch):
            report(step=99, worker=1)  # in a forked worker: must be a no-op
            return torch.tensor(batch)

        for i, b in enumerate(DataLoader(list(range(8)), batch_size=2, num_workers=2, collate_fn=collate)):
            report(step=i + 1, total=4)
        """
    )
    assert job.reports_received(0) == 4 and job.snapshot.ranks[0].step == 4
    assert "worker" not in job.snapshot.ranks[0].metrics


def test_framework_none_runs_plain_python_and_rank_env_does_not_leak(healthy_pool):
    ns = {}
    run("import torch.distributed as dist\nws = dist.get_world_size()", ns, gather=["ws"])
    run("import os, sklearn\nleft = os.environ.get('RANK')", ns, framework="none", gather=["left"])
    assert ns["left"] == [None, None]  # the torch job's RANK is gone for a plain job
    with pytest.raises(api.LaunchError, match="--backend only applies to a framework"):
        run("x = 1", backend="gloo")
    # a cell importing sklearn is a sklearn job now: it runs in the kernel (tests/jobs/test_sklearn.py)
    assert run("import sklearn\nx = 1").snapshot.framework == "sklearn"


def test_output_of_child_processes_is_captured_per_rank(healthy_pool):
    job = run(
        """
        import os, subprocess, sys
        import torch
        from torch.utils.data import DataLoader
        from trainorch_jupyter.runtime import rank

        def collate(batch):
            print(f"worker of rank {rank()} got {batch}")
            print("worker stderr", file=sys.stderr)
            return batch

        list(DataLoader(list(range(4)), batch_size=2, num_workers=2, collate_fn=collate))
        subprocess.run(["sh", "-c", f"echo subprocess of rank {rank()}"])
        os.write(1, f"fd write of rank {rank()}\\n".encode())
        """,
        framework="none",
    )
    for r in (0, 1):
        log = job.output(r)
        for text in (f"worker of rank {r} got [0, 1]", f"worker of rank {r} got [2, 3]", "worker stderr",
                     f"subprocess of rank {r}", f"fd write of rank {r}"):
            assert text in log, (r, text, log)
    assert "[rank 1] subprocess of rank 1" in job.printed


def test_view_clips_long_lines_and_keeps_streams_apart(healthy_pool):
    job = run(
        """
        import sys, time
        from trainorch_jupyter.runtime import rank
        print("A" * 100_000)
        for i in range(5):
            sys.stderr.write(f"\\rprogress {i}/5")
            sys.stderr.flush()
            print(f"out {i}")
        sys.stderr.write("\\n")
        """,
        framework="none",
    )
    printed = job.printed.splitlines()
    long_line = [line for line in printed if line.startswith("[rank 0] AAAA")][0]
    assert len(long_line) < 2100 and "98000 more characters in the log" in long_line
    assert "A" * 100_000 in job.output(0)  # the log keeps it whole
    assert "[rank 0] progress 4/5" in printed  # the last state of a line redrawn with \\r
    assert "[rank 0] out 4" in printed  # stdout lines are not glued to stderr's


def test_report_steps_are_plain_ints_even_from_tensors(healthy_pool):
    job = run("import torch\nfrom trainorch_jupyter.runtime import report\nreport(step=torch.tensor(3), total=torch.tensor(4), loss=torch.tensor(0.5), note='x' * 1000)")
    row = job.snapshot.ranks[0]
    assert row.step == 3 and type(row.step) is int and type(row.total) is int
    assert row.metrics["loss"] == 0.5 and len(row.metrics["note"]) <= 203


def test_long_outputs_do_not_pile_up_in_the_client(healthy_pool):
    job = run("for i in range(20_000):\n    print('line', i)", framework="none")
    assert job.output(0).count("\n") == 20_000
    client = healthy_pool.client
    for ar in job._ars.values():
        for msg_id in ar.msg_ids:
            assert not client.metadata[msg_id]["stdout"]  # kept in the log, not in memory twice
