"""Workloads shared by the benchmarks (cell sources, formatted with steps and step length)."""

# The training loop, identical under both launchers.  The process group exists
# when it starts; rank 0 leaves its figures in ``bench_result``.
TRAIN_BODY = """\
import time
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from sklearn.datasets import load_digits
from trainorch_jupyter.runtime import report

torch.set_num_threads(1)
torch.manual_seed(0)
_rank, _world = dist.get_rank(), dist.get_world_size()
_X, _y = load_digits(return_X_y=True)
X = torch.tensor(_X / 16.0, dtype=torch.float32)[_rank::_world]
y = torch.tensor(_y, dtype=torch.long)[_rank::_world]
model = DDP(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
STEPS, STEP_S, BATCH = {steps}, {step_s!r}, 32
_n = X.shape[0]
dist.barrier()
_works = []
_t_first = time.perf_counter()
for step in range(STEPS):
    _t0 = time.perf_counter()
    _i = (step * BATCH) % (_n - BATCH)
    xb, yb = X[_i:_i + BATCH], y[_i:_i + BATCH]
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    _loss = loss.item()
    report(step=step + 1, total=STEPS, loss=_loss)
    print(f"rank {{_rank}} step {{step + 1}}/{{STEPS}} loss {{_loss:.4f}}", flush=True)
    _work = time.perf_counter() - _t0
    _works.append(_work)
    if _work < STEP_S:
        time.sleep(STEP_S - _work)
_t_last = time.perf_counter()
_works.sort()
bench_result = {{
    "rank": _rank,
    "steps": STEPS,
    "seconds": _t_last - _t_first,
    "steps_per_s": STEPS / (_t_last - _t_first),
    "work_ms_median": 1000 * _works[len(_works) // 2],
    "work_ms_max": 1000 * _works[-1],
    "overruns": sum(w > STEP_S for w in _works),
    "final_loss": _loss,
}}
"""
