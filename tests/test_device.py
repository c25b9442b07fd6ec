"""Where a trial trains: the device rule (auto/cpu/cuda, a Ray GPU share), mixed precision,
channels_last, DataLoader workers, and the fields and checks that ask for them. Runs on the CPU:
CUDA's own paths are experiments/bench_cuda.py's (its --dry-run is tests/test_bench_cuda.py)."""
import pytest
import torch

from mrla_nas.arch import ArchConfig, StageConfig
from mrla_nas.errors import ConfigError
from mrla_nas.layers.heads import attention_weights, per_head_scores
from mrla_nas.search.ray_cluster import check_gpus
from mrla_nas.space import SearchSpace
from mrla_nas.training.data import ArrayDataset
from mrla_nas.training.device import resolve
from mrla_nas.training.proxy import train_proxy
from mrla_nas.training.trainer import Trainer

ARCH = ArchConfig(block="basic", layers=(1, 2), channels=(8, 16), stem="small", in_chans=1, num_classes=4,
                  stages=(StageConfig("light", heads=2), StageConfig("base", heads=2)))
PROXY = dict(dataset="fashion-mnist", train_size=48, val_size=16, epochs=2, resolution=16, batch_size=16,
             optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, augmentation="flip", threads=1)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g),
                        torch.arange(n) % 4, 4)


def _space(proxy=None, search=None):
    return SearchSpace.from_dict({"name": "d", "backbone": {"layers": [1, 1], "channels": [8, 16], "in_chans": 1},
                                  "proxy": proxy or {}, "search": search or {}}, check_paths=False)


# ---- the device rule ------------------------------------------------------------------------------
def test_auto_follows_the_trials_gpu_share_and_falls_back_to_the_cpu_with_a_note(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve({"device": "auto"}).device.type == "cpu"
    assert resolve({"device": "auto"}).note is None
    fallback = resolve({"device": "auto"}, gpu_share=True)  # Ray's logical GPUs on a CPU node
    assert fallback.device.type == "cpu" and "sees no CUDA device" in fallback.note
    assert not resolve({}).channels_last and resolve({"channels_last": True}).channels_last


def test_a_trial_without_a_gpu_share_trains_on_the_cpu_even_where_it_sees_cuda(monkeypatch):
    # Ray >= 2.50 may leave CUDA_VISIBLE_DEVICES alone for a zero-GPU trial: the share decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve({"device": "auto"}, gpu_share=False).device.type == "cpu"
    assert resolve({"device": "auto"}, gpu_share=True).device.type == "cuda"
    assert resolve({"device": "auto"}, gpu_share=True).channels_last  # auto: channels_last on CUDA


def test_cuda_without_a_device_and_fp16_on_the_cpu_name_their_field(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^proxy\.device='cuda': this process sees no CUDA device"):
        resolve({"device": "cuda"})
    with pytest.raises(ConfigError, match=r"^--device='cuda'"):
        resolve({"device": "cuda"}, field=lambda k: "--" + k)
    with pytest.raises(ConfigError, match=r"^proxy\.precision='fp16'.*allowed there: fp32, bf16"):
        resolve({"device": "auto", "precision": "fp16"}, gpu_share=True)


# ---- the space's fields ---------------------------------------------------------------------------
@pytest.mark.parametrize("proxy, search, message", [
    ({"device": "gpu"}, {}, r"^proxy\.device='gpu': allowed: auto, cpu, cuda"),
    ({"precision": "fp8"}, {}, r"^proxy\.precision='fp8': allowed: fp32, bf16, fp16"),
    ({"device": "cpu", "precision": "fp16"}, {}, r"^proxy\.precision='fp16': proxy\.device='cpu'"),
    ({"precision": "fp16"}, {}, r"^proxy\.precision='fp16': trials without a GPU share"),
    ({"channels_last": 1}, {}, r"^proxy\.channels_last=1: allowed: auto, true, false"),
    ({"compile": "yes"}, {}, r"^proxy\.compile='yes'"),
    ({"workers": -1}, {}, r"^proxy\.workers=-1: expected an integer in \[0, 256\]"),
    ({}, {"gpus_per_trial": 1.5}, r"^search\.gpus_per_trial=1\.5: expected 0 \(CPU trials\) or a share of one GPU"),
    ({}, {"gpus_per_trial": 2}, r"^search\.gpus_per_trial=2: .*a trial trains on one GPU"),
    ({}, {"gpus_per_trial": -0.25}, r"^search\.gpus_per_trial=-0\.25"),
    ({}, {"gpus_per_trial": True}, r"^search\.gpus_per_trial=True"),
    ({}, {"cpus_per_trial": 0}, r"^search\.cpus_per_trial=0"),
    ({"device": "cuda"}, {}, r"^search\.gpus_per_trial=0: proxy\.device='cuda' needs a GPU share"),
    ({"device": "cpu"}, {"gpus_per_trial": 0.5}, r"^search\.gpus_per_trial=0\.5: proxy\.device='cpu'"),
])
def test_bad_placement_fields_are_one_line(proxy, search, message):
    with pytest.raises(ConfigError, match=message):
        _space(proxy, search)


def test_trial_resources_default_to_the_proxys_threads_and_workers():
    assert _space().trial_resources() == {"cpu": 1, "gpu": 0}
    assert _space({"threads": 2, "workers": 3}, {"gpus_per_trial": 0.25}).trial_resources() == {"cpu": 5, "gpu": 0.25}
    assert _space({}, {"cpus_per_trial": 4, "gpus_per_trial": 1}).trial_resources() == {"cpu": 4, "gpu": 1}


def test_gpu_trials_on_a_machine_without_enough_gpus_are_refused_before_ray_starts(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = _space({}, {"gpus_per_trial": 0.25})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match=r"^search\.gpus_per_trial=0\.25: this machine has 0 CUDA devices"):
        check_gpus(space, None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_gpus(space, None)
    check_gpus(_space({}, {"gpus_per_trial": 1}), None)
    check_gpus(_space(), None)  # CPU trials: nothing to check


def test_the_cli_refuses_a_gpu_search_here_with_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from mrla_nas.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    space = tmp_path / "gpu.yaml"
    space.write_text("name: gpu\nbackbone: {layers: [1, 1], channels: [8, 16], in_chans: 1}\n"
                     "search: {gpus_per_trial: 1}\n")
    assert main(["search", str(space), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.gpus_per_trial=1: this machine has 0 CUDA devices" in err[0]
    assert not (tmp_path / "runs").exists()


# ---- what trains ------------------------------------------------------------------------------------
def test_dataloader_workers_train_the_same_network_as_the_trials_own_process():
    data = _data()
    runs = []
    for workers in (0, 2):
        trainer = Trainer(ARCH, dict(PROXY, workers=workers), data, seed=3)
        runs.append([trainer.train_epoch(), trainer.train_epoch()])
        runs[-1].append(trainer.evaluate(_data(16, seed=1)))
    assert runs[0] == runs[1]


def test_channels_last_on_the_cpu_trains_what_the_default_layout_does():
    data, val = _data(), _data(16, seed=1)
    plain = train_proxy(ARCH, PROXY, data=(data, val))
    nhwc = train_proxy(ARCH, dict(PROXY, channels_last=True), data=(data, val))
    assert plain.placement.describe() == "cpu" and nhwc.placement.channels_last
    assert nhwc.history[-1].train_loss == pytest.approx(plain.history[-1].train_loss, rel=1e-4)


def test_bf16_autocast_on_the_cpu_trains_finite_and_keeps_attention_scores_in_float32():
    data, val = _data(), _data(16, seed=1)
    plain = train_proxy(ARCH, PROXY, data=(data, val))
    bf16 = train_proxy(ARCH, dict(PROXY, precision="bf16"), data=(data, val))
    assert bf16.placement.precision == "bf16"
    for a, b in zip(plain.history, bf16.history):
        assert torch.isfinite(torch.tensor(b.train_loss)) and b.train_loss == pytest.approx(a.train_loss, rel=0.05)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mrla_scores_stay_finite_and_float32_under_autocast(dtype):
    # <Q_h, K_h> over 16 channels of 100 x 100: 160,000, beyond fp16's 65,504 (ATen's einsum gives inf)
    q = k = torch.full((2, 32), 100.0)
    with torch.autocast("cpu", dtype=dtype):
        scores = per_head_scores(q, k, heads=2, scale=0.25)
        weights = attention_weights(q, [k, 0.5 * k], heads=2, scale=0.25)
        assert torch.einsum("bd,bd->b", q, k).dtype == dtype  # what autocast does to an einsum
    assert scores.dtype == torch.float32 and torch.equal(scores, torch.full((2, 2), 40_000.0))
    assert weights.dtype == torch.float32 and torch.isfinite(weights).all()
    assert torch.allclose(weights[:, :, 0], torch.ones(2, 32))
