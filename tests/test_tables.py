"""The tabular benchmarks shipped in experiments/tables/: provenance, completeness, and two randomly
chosen rows retrained to exactly the recorded accuracies (training is deterministic under its seed)."""
from pathlib import Path

import numpy as np
import pytest

from mrla_nas.proxy import train_proxy
from mrla_nas.table import load_table, row_for

TABLES = Path(__file__).parent.parent / "experiments" / "tables"
SHIPPED = {"fmnist_resnet20_default.csv": 1, "fmnist_resnet20_early_stopping.csv": 6}  # name: min epochs


@pytest.mark.parametrize("name,min_epochs", SHIPPED.items())
def test_shipped_table_is_whole_and_says_where_it_comes_from(name, min_epochs):
    table = load_table(TABLES / name)
    p = table.provenance
    assert p["complete"] and p["networks"] == p["space_size"] >= 100
    assert len(p["seeds"]) >= 2 and p["recipe"]["epochs"] >= min_epochs
    assert {"torch", "optuna", "mrla-nas"} <= set(p["versions"]) and p["machine"]["cpus"] and p["date"]
    assert p["command"].startswith("python experiments/build_tables.py")
    rows = table.rows
    assert len(rows) == p["networks"] * len(p["seeds"]) * p["recipe"]["epochs"]
    assert rows["val_accuracy"].between(0, 1).all() and (rows["seconds"] > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_two_random_rows_retrain_to_the_recorded_accuracies(name):
    table = load_table(TABLES / name)
    space = table.space
    rng = np.random.default_rng(7)
    pairs = table.rows[["key", "seed"]].drop_duplicates().reset_index(drop=True)
    for i in rng.choice(len(pairs), size=2, replace=False):
        key, seed = pairs.at[i, "key"], int(pairs.at[i, "seed"])
        arch, curve = row_for(table, key, seed)
        result = train_proxy(arch, space.proxy, seed=seed, val_seed=space.seed)
        assert [h.val_accuracy for h in result.history] == curve["val_accuracy"].tolist(), (arch.summary(), seed)
