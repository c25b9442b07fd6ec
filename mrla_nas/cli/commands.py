"""What each ``mrla-nas`` subcommand does with its parsed arguments: one function per subcommand, each
importing what it needs when it runs (so ``--help`` and a usage error load no torch)."""
from __future__ import annotations

import sys

from .arguments import UsageError


def cost(args) -> None:
    import os

    import timm

    import mrla_nas.models  # noqa: F401  (registers the MRLA models)
    from mrla_nas.cost.flops import measure

    shape = (1, args.in_chans, args.input_size, args.input_size)
    known = set(timm.list_models())
    for name in args.models:
        if name not in known:
            if os.path.isfile(name):  # an exported architecture: `build` measures it
                raise UsageError(f"model={name!r} is a file, not a registered timm model; `mrla-nas build "
                                 f"{name}` gives an architecture file's params and FLOPs")
            close = [m for m in timm.list_models(f"*{name.split('_')[-1]}*")][:5]
            raise UsageError(f"model={name!r} is not a registered timm model"
                             + (f"; did you mean one of {close}?" if close else ""))
    rows = []
    for name in args.models:
        model = timm.create_model(name, num_classes=args.num_classes, in_chans=args.in_chans)
        embed = getattr(model, "patch_embed", None)
        if embed is not None and tuple(getattr(embed, "img_size", shape[2:]) or shape[2:]) != shape[2:]:
            # a ViT's position embedding fixes its input: build it for this one (timm resamples it)
            patch = embed.patch_size[0] if isinstance(embed.patch_size, (tuple, list)) else embed.patch_size
            if args.input_size % patch:
                raise UsageError(f"--input-size={args.input_size}: {name} takes sides that are a multiple of its "
                                 f"patch size {patch}")
            model = timm.create_model(name, num_classes=args.num_classes, in_chans=args.in_chans,
                                      img_size=args.input_size)
        rows.append((name, measure(model, shape, convention=args.convention)))
    times = _latencies(args, shape) if args.latency else {}
    ref = rows[0][1]
    print(f"input {shape[1:]} | FLOPs convention: {args.convention} (1 multiply-add = 1 FLOP)")
    lat_head = f" {'ms/step':>9s} {'x time':>7s} {'± spread':>8s}" if times else ""
    print(f"{'model':26s} {'params':>12s} {'FLOPs':>15s} {'d params':>10s} {'d GFLOPs':>9s} {'x FLOPs':>8s}{lat_head}")
    for name, c in rows:
        t = times.get(name)
        lat = f" {t.ms:9.2f} {t.ratio:7.3f} {t.spread:8.3f}" if t else ""
        print(f"{name:26s} {c.params:12,d} {c.flops:15,d} {c.params - ref.params:+10,d} "
              f"{(c.flops - ref.flops) / 1e9:+9.3f} {c.flops / ref.flops:8.4f}{lat}")
    if times:
        from mrla_nas.cost.latency import device_label
        print(f"latency: one {'training step' if args.latency_mode == 'train_step' else 'inference pass'} at batch "
              f"{args.batch}, {args.threads} thread(s), on {device_label('cpu')}; x time: median of {args.rounds} "
              f"paired ratios to {args.models[0]}, timed interleaved with it")


def _latencies(args, shape) -> dict:
    """Each model's latency against the first, interleaved in this process (cost/latency.py)."""
    import timm

    from mrla_nas.cost.latency import time_models

    settings = dict(mode=args.latency_mode, batch_size=args.batch, resolution=shape[2], threads=args.threads,
                    device="cpu", warmup=3, rounds=args.rounds)

    def make(name):
        return timm.create_model(name, num_classes=args.num_classes, in_chans=args.in_chans)
    reference = args.models[0]
    return {name: time_models(make(name), None if name == reference else make(reference), settings, args.in_chans,
                              args.num_classes) for name in dict.fromkeys(args.models)}


def space(args) -> None:
    from mrla_nas.space import load_space
    from mrla_nas.space.summary import format_summary, summarize

    if args.space == "init":  # mrla-nas space init BACKBONE: write a space instead of reading one
        from mrla_nas.space.template import space_template
        if not args.backbone:
            raise UsageError("space init: give BACKBONE, a registered MRLA model name or an architecture file")
        text = space_template(args.backbone, args.dataset)
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
            print(f"wrote {args.output}")
        else:
            sys.stdout.write(text)
        return
    if args.backbone:
        raise UsageError(f"space: one SPACE.yaml (or `space init BACKBONE`), not {args.space!r} and {args.backbone!r}")
    space = load_space(args.space, check_paths=not args.no_path_check)
    print(format_summary(space, summarize(space)))


def build(args) -> None:
    from mrla_nas.analysis.export import read_export
    from mrla_nas.arch import get_backbone
    from mrla_nas.cost.flops import measure
    from mrla_nas.models.build import build_model

    arch, metrics = read_export(args.file)
    kind = get_backbone(arch.backbone)
    recorded = tuple(metrics["input_shape"]) if "input_shape" in metrics else None
    if args.input_size is not None:
        shape, source, field = (1, arch.in_chans, args.input_size, args.input_size), "--input-size", "--input-size"
    elif recorded is not None:
        shape, source, field = recorded, "recorded in the file", f"{args.file}: metrics.input_shape[-1]"
    else:  # a plain config: the input its backbone is made for
        size = kind.default_input_size(arch)
        shape, source = (1, arch.in_chans, size, size), f"default for this {arch.backbone}; --input-size to change"
        field = "--input-size"
    arch.check_input(shape[-1], field)
    convention = args.convention or metrics.get("flops_convention") or "fvcore"
    cost = measure(build_model(arch), shape, convention=convention)
    print(f"{arch.summary()}  key {arch.key()}")
    for line in kind.describe(arch):
        print(f"  {line}")
    print(f"  input {shape[1:]} ({source})")
    print(f"  params {cost.params:,}  FLOPs {cost.flops:,} ({convention})")
    recorded_flops = metrics.get("flops")
    if (recorded == shape and recorded_flops is not None and recorded_flops != cost.flops
            and convention == metrics.get("flops_convention", convention)):
        print(f"  note: the file records {metrics['flops']:,} FLOPs for this input; this build counts "
              f"{cost.flops:,} (another mrla-nas or fvcore version?)")


def search(args) -> None:
    from mrla_nas.analysis.front import format_front
    from mrla_nas.analysis.run import load_run
    from mrla_nas.search import search

    result = search(args.space, name=args.name, runs_dir=args.runs_dir, trials=args.trials, resume=args.resume,
                    address=args.address, progress=not args.quiet)
    print(f"run directory: {result.run_dir}")
    print(format_front(load_run(result.run_dir)))


def pareto(args) -> None:
    import os

    from mrla_nas.analysis.front import format_front, plot_runs
    from mrla_nas.analysis.run import load_run

    given = {}  # each run once, as first written
    for r in args.runs:
        given.setdefault(os.path.realpath(r), r)
    runs = [load_run(r) for r in given.values()]
    conventions = {r.space.flops_convention for r in runs}
    if len(conventions) > 1:  # one FLOPs axis for all: a front counted otherwise would sit off it
        raise UsageError("runs count FLOPs differently (" + ", ".join(f"{r.path}: {r.space.flops_convention}"
                                                                     for r in runs) + "); give them one at a time")
    timed = [r for r in runs if "latency" in r.space.objectives]
    if len({r.latency_device for r in timed}) > 1:  # times of two machines on one axis mean nothing
        raise UsageError("runs measured latency on different devices (" + ", ".join(
            f"{r.path}: {r.latency_device}" for r in timed) + "); give them one at a time")
    for run in runs:
        if len(runs) > 1:
            print(f"== {run.path}")
        print(format_front(run))
    if args.csv:
        import pandas as pd
        try:
            pd.concat([r.front.assign(run=str(r.path)) for r in runs]).to_csv(args.csv, index=False)
        except OSError as e:
            raise UsageError(f"--csv={args.csv!r}: cannot be written ({e.strerror})") from None
    # Each run's folder gets its own front (pareto.csv, pareto.png); several runs' overlay goes to
    # --plot, by default beside the first run's own plot, never over it.
    wrote = []
    for run in runs:
        try:  # a read-only run (an archive, a colleague's folder) still shows its front
            run.front.to_csv(run.path / "pareto.csv", index=False)
            wrote += [run.path / "pareto.csv", plot_runs([run], run.path / "pareto.png")]
        except OSError as e:
            print(f"mrla-nas: note: pareto.csv/pareto.png not written into {run.path} ({e.strerror}); "
                  "the front above is complete", file=sys.stderr)
    if len(runs) > 1 or args.plot:
        overlay = args.plot or runs[0].path / "pareto-overlay.png"
        try:
            wrote.append(plot_runs(runs, overlay))
        except OSError as e:  # --plot was checked before any work: this is the default, in a read-only run
            print(f"mrla-nas: note: {overlay} not written ({e.strerror}); give --plot FILE for the overlay",
                  file=sys.stderr)
    if wrote:
        print("wrote " + ", ".join(str(p) for p in wrote))


def validate(args) -> None:
    from mrla_nas.analysis.validation import validate

    report = validate(args.run, epochs=args.epochs, train_size=args.train_size, seeds=args.seeds,
                      val_size=args.val_size, val_split=args.val_split, recipe_file=args.recipe,
                      trials=args.trials, name=args.name, address=args.address, progress=not args.quiet,
                      device=args.device, gpus_per_trial=args.gpus_per_trial, precision=args.precision)
    print(report.text())
    print(f"wrote {report.out_dir / 'validate.csv'} and {report.out_dir / 'validate.png'}")


def explain(args) -> None:
    from mrla_nas.analysis.explain import explain, plot_explanation

    e = explain(args.run, resamples=args.resamples, with_importance=not args.no_importance)
    print(e.text())
    if args.csv:
        e.table().to_csv(args.csv, index=False)
    try:
        png = plot_explanation(e, e.run.path / "explain.png")
        print(f"wrote {png}" + (f" and {args.csv}" if args.csv else ""))
    except OSError as err:
        print(f"mrla-nas: note: explain.png not written ({err.strerror})", file=sys.stderr)


def table(args) -> None:
    from mrla_nas.analysis.benchmark_table import export_table, load_table

    out = export_table(args.run, args.output, command=" ".join(["mrla-nas", *sys.argv[1:]]))
    table = load_table(out)
    p = table.provenance
    print(f"wrote {out}: {p['networks']} networks of {p['space_size']} ({'the whole space' if p['complete'] else 'not all'}), "
          f"seeds {p['seeds']}, {len(table.rows):,} rows (network x seed x epoch)")


def repair(args) -> None:
    from pathlib import Path

    from mrla_nas.rundir.files import check_run_dir
    from mrla_nas.rundir.journal import describe_corruption, keep_lines_before, set_aside_partial_tail

    run = Path(args.run)
    check_run_dir(run)
    journal = run / "study.journal"
    corruption = describe_corruption(journal)
    if corruption is not None:
        backup = keep_lines_before(journal, corruption.line)
        kept = f"lines 1-{corruption.line - 1}" if corruption.line > 1 else "no line (its first was damaged)"
        print(f"{journal}: kept {kept} ({corruption.trials_before} trials); the whole "
              f"journal as it was is in {backup.name}")
    aside = set_aside_partial_tail(journal)
    if aside is not None:
        print(f"{journal}: an incomplete last operation ({aside.stat().st_size} bytes) set aside in {aside.name}")
    if corruption is None and aside is None:
        print(f"{journal}: every line is a complete operation; nothing to repair")


def export(args) -> None:
    from mrla_nas.analysis.export import export, select
    from mrla_nas.analysis.run import load_run

    run = load_run(args.run)
    row = select(run, trial=args.trial, max_flops=args.max_flops, min_accuracy=args.min_accuracy)
    target = args.output or run.path / "best.yaml"
    try:
        out = export(run, row, target)
    except OSError as e:
        raise UsageError(f"{target}: cannot be written ({e.strerror}); give -o FILE somewhere writable") from None
    print(f"trial {int(row['trial_id'])} ({row['summary']}): accuracy {row['accuracy']:.4f}, "
          f"{int(row['flops']):,} FLOPs, {int(row['params']):,} params -> {out}")


def train(args) -> None:
    from mrla_nas.training.full import train

    train(args.file, out_dir=args.out, dataset=args.dataset, path=args.path, epochs=args.epochs,
          batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
          augmentation=args.augmentation, resolution=args.resolution, train_size=args.train_size,
          hold_out=args.hold_out, seed=args.seed, threads=args.threads, device=args.device, precision=args.precision, workers=args.workers)
