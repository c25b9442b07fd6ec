"""experiments/bench_cuda.py is run the day a GPU is lent: its whole plan runs here on the CPU
(--dry-run) so that the script cannot rot before then."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.ray
def test_the_gpu_plan_runs_whole_on_the_cpu(tmp_path):
    out = tmp_path / "bench_cuda.json"
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_cuda.py"), "--dry-run", "--out", str(out),
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert done.returncode == 0, {k: v.get("error") for k, v in report.items() if k != "meta"}
    assert report["meta"]["dry_run"] and report["meta"]["device"] == "cpu"
    units = report["units"]["result"]
    assert set(units) == {"resnet_light", "resnet_base", "deit_light", "deit_base"}
    assert all(u["ok"] and u["output"] < 1e-4 for u in units.values())
    for form in ("light", "base"):
        bf16 = report["precision"]["result"][form]["bf16"]
        assert bf16["finite"] and bf16["logit_max_abs_dev"] < 0.1
    assert {k.split(" [")[0] for k in report["throughput"]["result"]} == {"resnet50", "mrla_light_resnet50",
                                                                          "mrla_base_resnet50"}
    search = report["search"]["result"]
    assert search["statuses"] == {"complete": 4} and search["devices"] == {"cpu": 4}
    assert report["train"]["result"]["device"] == "cpu" and 0 <= report["train"]["result"]["test_accuracy"] <= 1
