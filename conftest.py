"""pytest set-up for the package's doctests (``--doctest-modules`` over ``mrla_nas/``).

Their examples name files as a user in a checkout would, relative to the repository root
(``search_spaces/tiny.yaml``, ``experiments/tables/...``): they run there whatever the directory
pytest was started from.
"""
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _doctests_run_from_the_repository_root(request, monkeypatch):
    if pathlib.Path(request.node.path).resolve().is_relative_to(ROOT / "mrla_nas"):
        monkeypatch.chdir(ROOT)
