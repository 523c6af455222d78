import os

from trainorch_jupyter.pool import env, gpus

SMI = """0, GPU-aaaa-1111, NVIDIA H100 80GB HBM3, 81559
1, GPU-bbbb-2222, NVIDIA H100 80GB HBM3, 81559
2, GPU-cccc-3333, NVIDIA H100 80GB HBM3, [N/A]
"""


def test_parse_nvidia_smi():
    found = gpus.parse_nvidia_smi(SMI + "garbage line\n")
    assert [g.index for g in found] == [0, 1, 2]
    assert found[1].uuid == "GPU-bbbb-2222" and found[0].memory_mb == 81559
    assert found[2].memory_mb == 0


def test_visible_unset_pins_by_uuid():
    found = gpus.visible(gpus.parse_nvidia_smi(SMI), None)
    assert [g.token for g in found] == ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-cccc-3333"]


def test_visible_keeps_tokens_given_by_slurm_or_hub():
    all_ = gpus.parse_nvidia_smi(SMI)
    assert [(g.index, g.token) for g in gpus.visible(all_, "2,0")] == [(2, "2"), (0, "0")]
    assert [g.index for g in gpus.visible(all_, "GPU-bbbb")] == [1]
    assert [g.token for g in gpus.visible(all_, "GPU-bbbb")] == ["GPU-bbbb"]
    assert gpus.visible(all_, "") == [] and gpus.visible(all_, "-1") == []
    # CUDA stops at the first invalid entry
    assert [g.index for g in gpus.visible(all_, "1,7,0")] == [1]


def test_discover_uses_fake_nvidia_smi_and_honours_cuda_visible_devices(fake_gpus):
    fake_gpus(4)
    assert len(gpus.discover({})) == 4
    got = gpus.discover({"CUDA_VISIBLE_DEVICES": "3,1"})
    assert [(g.index, g.token) for g in got] == [(3, "3"), (1, "1")]


def test_discover_without_nvidia_smi_finds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus.discover({}) == []


def test_engine_env_is_pure_and_complete():
    e = env.engine_env("GPU-aaaa", 4)
    assert e["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa"
    assert e["OMP_NUM_THREADS"] == e["MKL_NUM_THREADS"] == e["TRAINORCH_THREADS"] == "4"
    assert env.engine_env(None, 1)["CUDA_VISIBLE_DEVICES"] == ""
    assert env.threads_per_engine(16, 4) == 4 and env.threads_per_engine(2, 4) == 1
    assert env.engine_env("0", 2) == env.engine_env("0", 2)
