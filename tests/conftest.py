import pathlib

import pytest
import torch

import mrla_nas  # noqa: F401  (registers the timm models)
from mrla_nas.models import official_to_mrla_nas_keys

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    torch.set_num_threads(1)  # the suite runs beside other work on 2 cores
    torch.manual_seed(0)


def load_reference(name: str) -> dict:
    return torch.load(DATA / "reference" / f"{name}.pt", weights_only=True)


def unit_state_dict(official_unit_sd: dict) -> dict:
    """An official ``mrla_module`` state_dict renamed to an mrla-nas unit's, via the converter's own rules."""
    prefixed = {f"layer1.0.mrla.{k}": v for k, v in official_unit_sd.items()}
    return {k[len("layer1.0.mrla."):]: v for k, v in official_to_mrla_nas_keys(prefixed).items()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()
