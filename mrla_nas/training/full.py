"""Full training of an exported architecture (``mrla-nas train FILE``), resumable, with the final
test-split accuracy. Uses the search's data pipeline and trainer (:class:`~mrla_nas.training.trainer.Trainer`).

Checkpoints (``OUT/checkpoint.pt``, written atomically after every epoch) hold only tensors and
plain types, so ``torch.load(path, weights_only=True)`` reads them; ``OUT/model.pt`` is the final
state_dict and ``OUT/result.json`` the history and test accuracy.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..arch import ArchConfig, load_arch
from ..errors import ConfigError, show
from ..settings import torch_threads
from ..space import SearchSpace
from ..space.recipe import SEARCH_RECIPE
from ..space.schema import read_proxy
from ..yaml_io import load_yaml_file
from .data import DatasetError, load_dataset, stratified_split
from .device import Placement, resolve
from .trainer import Trainer

DEFAULTS = dict(dataset="fashion-mnist", path=None, epochs=10, batch_size=128, optimizer="sgd", lr=0.1,
                momentum=0.9, weight_decay=5e-4, augmentation="none", resolution=None, train_size=None,
                hold_out=0, seed=0, threads=None, device="auto", precision="fp32", workers=0)


def _provenance(doc, arch_file) -> Tuple[Dict[str, Any], Optional[str]]:
    """The search's proxy settings and run directory an exported file records, checked."""
    prov = doc.get("provenance") if isinstance(doc, dict) else None
    if prov is None:
        return {}, None
    where = f"{arch_file}: provenance"
    if not isinstance(prov, dict):
        raise ConfigError(f"{where}={show(prov)}: expected a mapping (what `mrla-nas export` writes)")
    proxy, run = prov.get("proxy") or {}, prov.get("run")
    if not isinstance(proxy, dict):
        raise ConfigError(f"{where}.proxy={show(proxy)}: expected a mapping of the search's proxy settings")
    if run is not None and not isinstance(run, str):
        raise ConfigError(f"{where}.run={show(run)}: expected the run directory's path")
    recorded = {k: proxy[k] for k in ("dataset", "resolution") + SEARCH_RECIPE if k in proxy}
    try:  # the space's own rules for each recorded value (a placeholder path: the folder is not read here)
        read_proxy(dict(recorded, path="."), check_paths=False)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None
    return recorded, run


# What may differ between a training and its resumption: nothing that changes what is computed.
RESUMABLE_CHANGES = ("threads", "device", "workers")


def _check_same_recipe(recorded: Dict[str, Any], recipe: Dict[str, Any], path: Path) -> None:
    """A resumed training continues the checkpoint's recipe: its optimizer, cosine schedule (which
    ends at the checkpoint's epochs), data subset and random state are restored as they were, so
    another value would be ignored or mixed in while result.json recorded it."""
    for key in sorted(set(recorded) | set(recipe)):
        # a checkpoint written before a setting existed was trained at its default (fp32, say)
        was, now = recorded.get(key, DEFAULTS.get(key)), recipe.get(key)
        if key == "path" and isinstance(was, str) and isinstance(now, str):  # one folder, however written
            was, now = os.path.realpath(os.path.expanduser(was)), os.path.realpath(os.path.expanduser(now))
        if key in RESUMABLE_CHANGES or was == now:
            continue
        flag = "--" + key.replace("_", "-")
        why = " (its learning-rate schedule ends there)" if key == "epochs" else ""
        raise ConfigError(f"{flag}={show(recipe.get(key))}: the checkpoint {path} was trained with "
                          f"{key}={show(recorded.get(key))}{why}; resume with the same settings, or train from "
                          "the start with another --out")


def _load_checkpoint(trainer: Trainer, path: Path, arch: ArchConfig, recipe: Dict[str, Any]) -> list:
    """Resume ``trainer`` from ``path`` (trained with ``recipe``); returns the epochs' history so far."""
    try:
        state = torch.load(path, weights_only=True)
        key = state["arch_key"]
    except Exception as e:  # torch.load raises many kinds on a damaged or foreign file
        raise ConfigError(f"{path}: not a mrla-nas training checkpoint ({type(e).__name__}); delete it to train "
                          "from the start, or use another --out") from None
    if key != arch.key():
        raise ConfigError(f"{path}: a checkpoint of another architecture; use another --out")
    try:
        recorded = json.loads(state["recipe"])
    except Exception as e:
        recorded = e
    if not isinstance(recorded, dict):
        raise ConfigError(f"{path}: a damaged training checkpoint (its recipe: {type(recorded).__name__}); delete "
                          "it to train from the start, or use another --out")
    _check_same_recipe(recorded, recipe, path)
    try:
        trainer.load_state_dict(state["trainer"])
        return json.loads(state["history"])
    except Exception as e:
        raise ConfigError(f"{path}: a damaged training checkpoint ({type(e).__name__}); delete it to train "
                          "from the start, or use another --out") from None


def recipe_for(arch_file, **overrides) -> Dict[str, Any]:
    """The training recipe: given values, else the search's proxy settings (dataset, resolution and
    ``SEARCH_RECIPE``) recorded in the export or in its run's space, else DEFAULTS."""
    doc = load_yaml_file(arch_file, "architecture file") or {}
    proxy, run = _provenance(doc, arch_file)
    searched = None
    if run and (Path(run) / "space.yaml").exists():  # the search's own settings, its dataset folder
        searched = SearchSpace.from_file(Path(run) / "space.yaml", check_paths=False).proxy
    recipe = dict(DEFAULTS)
    for k in ("dataset", "resolution") + SEARCH_RECIPE:
        if k in proxy:
            recipe[k] = proxy[k]
        elif searched:
            recipe[k] = searched[k]
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("path") is None and searched and searched["dataset"] == recipe["dataset"]:
        # only for the search's own dataset: MNIST's files are named as Fashion-MNIST's
        recipe["path"] = searched["path"]
    if recipe["path"] is None:
        if recipe["dataset"] != "fashion-mnist":
            raise ConfigError(f"--path: required for dataset {recipe['dataset']!r}")
        recipe["path"] = "/usr/share/datasets/fashion-mnist"
    return recipe


def _check_out_folder(out: Path, given: bool) -> None:
    """The output folder can be made and written: checked before any work."""
    field = f"--out={str(out)!r}" if given else f"--out (default {str(out)!r})"
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{field}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{field}: {str(existing)!r} cannot be written")


def train(arch_file, out_dir: Optional[os.PathLike] = None, log=print, **overrides) -> Dict[str, Any]:
    arch: ArchConfig = load_arch(arch_file)
    recipe = recipe_for(arch_file, **overrides)
    out = Path(out_dir or Path(arch_file).with_suffix("").as_posix() + "-train")
    _check_out_folder(out, given=out_dir is not None)
    placement = resolve(recipe, field=lambda key: "--" + key)  # before any data is read
    with torch_threads(recipe["threads"]), placement.session():
        return _train(arch, arch_file, recipe, out, overrides, log, placement)


def _splits(recipe: Dict[str, Any]):
    """The training split (or its stratified ``train_size`` subset) and the test split. An
    ImageFolder is read from its files as batches are drawn (streaming.py), never decoded whole."""
    resolution = recipe["resolution"] or 224
    if recipe["dataset"] == "imagefolder":
        from .streaming import streamed_split

        train_set = streamed_split(recipe["path"], "train", resolution)
        if recipe["train_size"] or recipe["hold_out"]:
            train_set = streamed_split(recipe["path"], "train", resolution, _training_indices(train_set, recipe))
        return train_set, streamed_split(recipe["path"], "test", resolution)
    train_set = load_dataset(recipe["dataset"], recipe["path"], "train", resolution)
    test_set = load_dataset(recipe["dataset"], recipe["path"], "test", resolution)
    if recipe["train_size"] or recipe["hold_out"]:
        train_set = train_set.subset(_training_indices(train_set, recipe))
    return train_set, test_set


def _training_indices(train_set, recipe: Dict[str, Any]):
    """The stratified ``train_size`` subset (all that is left without one), outside the ``hold_out``
    validation subset: the one a search space with seed ``seed`` carves first (data.stratified_split)."""
    hold = recipe["hold_out"]
    if hold >= len(train_set.labels):
        raise ConfigError(f"--hold-out={hold}: the training split has {len(train_set.labels)} images")
    size = recipe["train_size"] or len(train_set.labels) - hold
    idx, _ = stratified_split(train_set.labels, size, hold, recipe["seed"])
    return idx


def _train(arch: ArchConfig, arch_file, recipe: Dict[str, Any], out: Path, overrides: Dict[str, Any],
           log, placement: Placement) -> Dict[str, Any]:
    """Load the data, resume or start, train ``recipe['epochs']`` epochs with a checkpoint after each,
    test; the result as ``OUT/result.json`` records it."""
    try:
        train_set, test_set = _splits(recipe)
    except DatasetError as e:  # the loaders name a space's field; here the user gave --path
        if overrides.get("path") is None:
            raise
        raise type(e)(str(e).replace("proxy.path", "--path")) from None
    where = ("--resolution" if overrides.get("resolution") is not None else
             f"{arch_file}: provenance.proxy.resolution" if recipe["resolution"] else
             f"the {recipe['dataset']} images' size (--resolution)")
    recipe["resolution"] = recipe["resolution"] or int(train_set.images.shape[-1])
    arch.check_input(recipe["resolution"], where)  # a ViT's position embedding fixes its input size
    trainer = Trainer(arch, recipe, train_set, recipe["seed"], placement)
    log(f"training on {placement.describe()}" + (f", {placement.precision}" if placement.precision != "fp32" else ""))

    ckpt_path = out / "checkpoint.pt"
    history = []
    if ckpt_path.exists():
        history = _load_checkpoint(trainer, ckpt_path, arch, recipe)
        log(f"resuming from epoch {trainer.epoch} ({ckpt_path})")
    out.mkdir(parents=True, exist_ok=True)
    while trainer.epoch < recipe["epochs"]:
        t0 = time.perf_counter()
        loss = trainer.train_epoch()
        history.append({"epoch": trainer.epoch, "train_loss": loss, "seconds": time.perf_counter() - t0})
        tmp = out / ".checkpoint.pt.tmp"
        torch.save({"trainer": trainer.state_dict(), "arch_key": arch.key(), "history": json.dumps(history),
                    "recipe": json.dumps(recipe)}, tmp)
        os.replace(tmp, ckpt_path)
        log(f"epoch {trainer.epoch}/{recipe['epochs']}  train loss {loss:.4f}  ({history[-1]['seconds']:.1f}s)")
    acc, loss = trainer.evaluate(test_set)
    torch.save(trainer.model.state_dict(), out / "model.pt")
    result = {"arch": arch.to_dict(), "key": arch.key(), "recipe": recipe, "device": placement.describe(),
              "history": history,
              "test_accuracy": acc, "test_loss": loss, "test_size": len(test_set)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    log(f"test accuracy {acc:.4f} on {len(test_set)} test images ({recipe['dataset']}); wrote {out}")
    return result
