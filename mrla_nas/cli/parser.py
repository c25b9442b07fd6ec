"""The ``mrla-nas`` argument parser: every subcommand, its arguments and their help. The choices are
read from the modules that own them (torch-free to import, so ``--help`` loads no torch)."""
from __future__ import annotations

import argparse

from . import commands
from .arguments import (Parser, amount, finite_float, gpu_share, input_size, non_negative_int, output_file,
                        plot_file, positive_int)


def build_parser() -> argparse.ArgumentParser:
    from mrla_nas.cost import CONVENTIONS
    from mrla_nas.space.datasets import DATASETS
    from mrla_nas.space.recipe import AUGMENTATIONS, DEVICES, OPTIMIZERS, PRECISIONS, VAL_SPLITS
    from mrla_nas.space.schema import LATENCY_MODES

    parser = Parser(prog="mrla-nas", description="Search where MRLA layer attention pays off.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("cost", help="params and FLOPs (fvcore) of timm / MRLA models, side by side")
    p.add_argument("models", nargs="+", help="registered model names; the first is the reference")
    p.add_argument("--input-size", type=input_size, default=224)
    p.add_argument("--in-chans", type=positive_int, default=3)
    p.add_argument("--num-classes", type=positive_int, default=1000)
    p.add_argument("--convention", choices=CONVENTIONS, default="fvcore")
    p.add_argument("--latency", action="store_true", help="also time each model against the first, interleaved")
    p.add_argument("--latency-mode", choices=LATENCY_MODES, default="train_step")
    p.add_argument("--batch", type=positive_int, default=8, help="batch size of the latency's step (8)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads while timing (1)")
    p.add_argument("--rounds", type=positive_int, default=21, help="interleaved rounds (21)")
    p.set_defaults(func=commands.cost)

    p = sub.add_parser("space", help="validate a YAML search space and summarise it; `space init BACKBONE` "
                                     "writes one")
    p.add_argument("space", help="path to SPACE.yaml, or init")
    p.add_argument("backbone", nargs="?", help="with init: a registered MRLA model name or an architecture file")
    p.add_argument("--dataset", default="fashion-mnist", help=f"with init: {', '.join(DATASETS)}")
    p.add_argument("-o", "--output", type=output_file, help="with init: write the space to this file")
    p.add_argument("--no-path-check", action="store_true", help="do not require the dataset folder to exist")
    p.set_defaults(func=commands.space)

    p = sub.add_parser("search", help="search a space: Ray Tune proxy trainings proposed by Optuna")
    p.add_argument("space", help="path to SPACE.yaml")
    p.add_argument("--name", help="run name (default: the space's name)")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: ./runs)")
    p.add_argument("--trials", type=positive_int, help="total number of trials (overrides search.trials)")
    p.add_argument("--resume", action="store_true", help="continue the run directory of the same name")
    p.add_argument("--address", help="an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=commands.search)

    p = sub.add_parser("pareto", help="the Pareto front of one or more runs: table, hypervolume, plot")
    p.add_argument("runs", nargs="+", help="run directories (several: overlaid in the plot)")
    p.add_argument("--csv", type=output_file, help="also write the front(s) to this CSV file")
    p.add_argument("--plot", type=plot_file, help="the plot of all the runs given (default with several runs: "
                                  "FIRST_RUN/pareto-overlay.png; each run's own front is its pareto.png)")
    p.set_defaults(func=commands.pareto)

    p = sub.add_parser("validate", help="retrain a run's front, knee and reference placements at a higher "
                                        "fidelity; rank agreement with the proxy")
    p.add_argument("run", help="a run directory")
    p.add_argument("--epochs", type=positive_int, help="validation epochs (default: 4x the proxy's)")
    p.add_argument("--train-size", type=positive_int, help="training images (default: the proxy's)")
    p.add_argument("--seeds", type=positive_int, help="seeds per network (default: 3, or the proxy's if more)")
    p.add_argument("--val-size", type=positive_int, help="validation images (default: the proxy's)")
    p.add_argument("--val-split", choices=VAL_SPLITS,
                   help="validation carved from the training split, or the dataset's test split")
    p.add_argument("--recipe", help="a YAML file of proxy settings for the validation recipe")
    p.add_argument("--trials", type=non_negative_int, nargs="+", help="validate these trials instead")
    p.add_argument("--name", default="validate", help="the validation run's folder in RUN (default: validate)")
    p.add_argument("--address", help="an existing Ray cluster")
    p.add_argument("--device", choices=DEVICES, help="where the validation trials train (default: the search's "
                                                    "proxy.device)")
    p.add_argument("--gpus-per-trial", type=gpu_share, help="GPUs per validation trial (default: the search's; "
                                                             "1 with --device cuda)")
    p.add_argument("--precision", choices=PRECISIONS, help="mixed precision of the validation trials")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=commands.validate)

    p = sub.add_parser("explain", help="per-stage effects of MRLA on accuracy and FLOPs, and importances")
    p.add_argument("run", help="a run directory")
    p.add_argument("--csv", type=output_file, help="also write the effects table to this CSV file")
    p.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--no-importance", action="store_true", help="skip Optuna's importance evaluators")
    p.set_defaults(func=commands.explain)

    p = sub.add_parser("table", help="export a run as a tabular benchmark (one row per network, seed, epoch)")
    p.add_argument("run", help="a run directory (search.sampler: brute_force evaluates every network)")
    p.add_argument("-o", "--output", type=output_file, help="output CSV (default: RUN/table.csv)")
    p.set_defaults(func=commands.table)

    p = sub.add_parser("repair", help="make a run's journal readable again after a crash (keeps copies)")
    p.add_argument("run", help="a run directory")
    p.set_defaults(func=commands.repair)

    p = sub.add_parser("export", help="write the chosen architecture config of a run")
    p.add_argument("run")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=non_negative_int, help="this trial id")
    which.add_argument("--knee", action="store_true", help="the knee of the front (default)")
    which.add_argument("--max-flops", type=amount, help="the most accurate front trial within this many FLOPs")
    which.add_argument("--min-accuracy", type=finite_float, help="the cheapest front trial reaching this accuracy")
    p.add_argument("-o", "--output", type=output_file, help="output YAML (default: RUN/best.yaml)")
    p.set_defaults(func=commands.export)

    p = sub.add_parser("train", help="fully train an exported architecture (resumable); reports test accuracy")
    p.add_argument("file", help="an exported ArchConfig (best.yaml)")
    p.add_argument("--dataset", choices=list(DATASETS))
    p.add_argument("--path", help="dataset folder (default: the one the search used)")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=finite_float)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--weight-decay", type=finite_float)
    p.add_argument("--augmentation", choices=AUGMENTATIONS)
    p.add_argument("--resolution", type=input_size)
    p.add_argument("--train-size", type=positive_int, help="a stratified subset of the training split")
    p.add_argument("--hold-out", type=non_negative_int,
                   help="leave out the N-image validation subset a search space with seed --seed carves from the "
                        "training split (a backbone pretrained here never sees the images its proxies are scored on)")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--device", choices=DEVICES, help="auto (default: CUDA if this process sees a GPU), cpu or cuda")
    p.add_argument("--precision", choices=PRECISIONS, help="fp32 (default), bf16 or fp16 (CUDA) mixed precision")
    p.add_argument("--workers", type=non_negative_int, help="DataLoader worker processes reading batches (0)")
    p.add_argument("--out", help="output folder (default: FILE-train/); an existing checkpoint there is resumed")
    p.set_defaults(func=commands.train)

    p = sub.add_parser("build", help="build the network of an architecture config and print its summary")
    p.add_argument("file", help="an ArchConfig YAML/JSON (what `mrla-nas export` writes)")
    p.add_argument("--input-size", type=input_size,
                   help="side of the square input (default: the input recorded in an exported file, else 32 "
                        "for the small stem and 224 for the others)")
    p.add_argument("--convention", choices=CONVENTIONS,
                   help="FLOPs convention (default: the file's, else fvcore)")
    p.set_defaults(func=commands.build)
    return parser
