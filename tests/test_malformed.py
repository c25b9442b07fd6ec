"""The catalogue of malformed and hostile files: every one ends in one line naming what is wrong and
exit code 2, without running code from the file or reading more of it than a sane amount.

Two kinds: a valid YAML space with one field wrong (FIELD), and a file that is wrong as YAML or
attacks the parser (RAW: duplicate keys, nesting and alias bombs, tags, encodings, huge files,
things that are not files).
"""
import os
import pathlib
import time

import pytest
import yaml

from mrla_nas.cli import main

SPACES = pathlib.Path(__file__).parent.parent / "search_spaces"
TINY_TEXT = (SPACES / "tiny.yaml").read_text()
MAX_LINE = 400  # "one short line": what the user reads, whatever the file held


def _one_line_exit_2(argv, capsys, expected):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("mrla-nas: error: ") and len(lines[0]) < MAX_LINE, lines[0][:2000]
    assert expected in lines[0], lines[0]
    return lines[0]


# ---- one field wrong --------------------------------------------------------------------------------
def _patched(path_value_pairs):
    data = yaml.safe_load(TINY_TEXT)
    for dotted, value in path_value_pairs:
        node = data
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[k]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return data


_DELETE = object()

FIELD = [
    ("unknown top-level key", [("searh", {})], "searh: unknown key (did you mean 'search'?)"),
    ("missing name", [("name", _DELETE)], "name: missing"),
    ("bad name", [("name", "my space")], "name='my space'"),
    ("negative seed", [("seed", -1)], "seed=-1"),
    ("unknown backbone key", [("backbone.blok", "basic")], "backbone.blok: unknown key (did you mean 'block'?)"),
    ("bad block", [("backbone.block", "resnet")], "backbone.block='resnet'"),
    ("bad stem", [("backbone.stem", "7x77")], "backbone.stem='7x77'"),
    ("layers not ints", [("backbone.layers", [1, "two"])], "backbone.layers[1]='two'"),
    ("layers/channels length", [("backbone.channels", [8, 16, 32])], "backbone.channels: 3 stages, but layers has 2"),
    ("zero classes", [("backbone.num_classes", 0)], "backbone.num_classes=0"),
    ("empty choice list", [("stages.form", [])], "stages.form=[]: the choice list is empty"),
    ("unknown form", [("stages.form", ["none", "lite"])], "stages.form[1]='lite'"),
    ("unknown stage key", [("stages.head", [2])], "stages.head: unknown key (did you mean 'heads'?)"),
    ("heads do not divide", [("stages.heads", [3])], "stages.heads[0]=3: does not divide the stage width"),
    ("reduction does not divide", [("stages.reduction", [None, 3])], "stages.reduction[1]=3: does not divide"),
    ("heads not int", [("stages.heads", ["many"])], "stages.heads[0]='many'"),
    ("heads and channels_per_head", [("stages.channels_per_head", [4])], "stages: give heads or channels_per_head"),
    ("stage list length", [("stages", [{"form": ["light"]}] * 3)], "stages='<3 entries>'"),
    ("bad objective", [("objectives", {"accuracy": "min", "flops": "min"})], "objectives.accuracy='min'"),
    ("unknown objective", [("objectives", {"accuracy": "max", "flops": "min", "energy": "min"})],
     "objectives.energy: unknown key"),
    ("budget not a number", [("constraints.max_flops", "lots")], "constraints.max_flops='lots'"),
    ("budget nobody meets", [("constraints.max_flops", 1000)], "constraints.max_flops=1000: no config can meet it"),
    ("unknown dataset", [("proxy.dataset", "fmnist")], "proxy.dataset='fmnist'"),
    ("missing dataset folder", [("proxy.path", "/nonexistent/fmnist")], "proxy.path='/nonexistent/fmnist': folder does not exist"),
    ("zero epochs", [("proxy.epochs", 0)], "proxy.epochs=0"),
    ("bad optimizer", [("proxy.optimizer", "adam")], "proxy.optimizer='adam'"),
    ("bad lr", [("proxy.lr", -1)], "proxy.lr=-1"),
    ("bad sampler", [("search.sampler", "cmaes")], "search.sampler='cmaes'"),
    ("bad scheduler", [("search.scheduler", "hyperband")], "search.scheduler='hyperband'"),
    ("zero trials", [("search.trials", 0)], "search.trials=0"),
    ("bad initial placement", [("search.initial", ["none", "heavy"])], "search.initial[1]='heavy'"),
    ("initial outside space", [("stages.form", ["none", "light"]), ("search.initial", ["base"])],
     "search.initial[0]: stage 1 form 'base' is not allowed"),
    ("bad convention", [("flops_convention", "thop")], "flops_convention='thop'"),
    ("lr not a number (nan)", [("proxy.lr", float("nan"))], "proxy.lr=nan: expected a finite number"),
    ("budget infinite", [("constraints.max_flops", float("inf"))], "constraints.max_flops=inf: expected a finite"),
    ("budget 1e999 written out", [("constraints.max_flops", "1e999")], "constraints.max_flops=inf"),
    ("seed beyond 32 bits", [("seed", 2 ** 40)], "seed=1099511627776: expected an integer in [0, 2**32)"),
    ("name too long", [("name", "x" * 200)], "name='xxxxx"),
    ("name is a path", [("name", "..")], "name='..'"),
    ("resolution absurd", [("proxy.resolution", 100_000)], "proxy.resolution=100000: expected an integer in [1, 4,096]"),
    ("feature map too large", [("proxy.resolution", 4096), ("backbone.stem_width", 64)], "proxy.resolution=4096: a 4096 px image needs"),
    ("channels absurd", [("backbone.channels", [100_000, 16])], "backbone.channels[0]=100000"),
    ("too many stages", [("backbone.layers", [1] * 20), ("backbone.channels", [8] * 20)], "backbone.layers="),
    ("too many blocks", [("backbone.layers", [10_000, 1])], "backbone.layers[0]=10000"),
    ("too many parameters", [("backbone.layers", [512, 512]), ("backbone.channels", [8192, 8192])],
     "parameters, more than"),
    ("too many backbone combinations", [("backbone.in_chans", {"choices": list(range(1, 80))}),
                                        ("backbone.num_classes", {"choices": list(range(10, 90))})],
     "backbone='<6,320 combinations>'"),
    ("trials absurd", [("search.trials", 10 ** 12)], "search.trials=1000000000000"),
    ("concurrency absurd", [("search.concurrency", 10 ** 6)], "search.concurrency=1000000"),
    ("epochs as a float", [("proxy.epochs", 2.0)], "proxy.epochs=2.0"),
    ("seed as a boolean", [("seed", True)], "seed=True"),
    ("huge unknown key", [("x" * 100_000, 1)], "unknown key"),
    ("huge block name", [("backbone.block", "b" * 500_000)], "backbone.block='bbbbb"),
    ("block choice a list", [("backbone.block", [["basic"]])], "backbone.block=['basic']: allowed: basic"),
    ("one training image", [("proxy.train_size", 1)], "proxy.train_size=1: expected at least 2 (BatchNorm"),
    ("batches of one", [("proxy.batch_size", 1)], "proxy.batch_size=1: expected at least 2 (BatchNorm"),
    ("a crop larger than the image", [("proxy.resolution", 1), ("proxy.augmentation", "crop_flip")],
     "proxy.resolution=1: augmentation 'crop_flip' pads 1 px by reflection and needs images of at least 2 px"),
    ("stem choice a mapping", [("backbone.stem", [{"a": 1}])], "backbone.stem={'a': 1}: allowed:"),
]


@pytest.mark.parametrize("what,patch,expected", FIELD, ids=[m[0] for m in FIELD])
def test_malformed_field_exits_2_with_one_line(what, patch, expected, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_patched(patch)))
    _one_line_exit_2(["space", str(path)], capsys, expected)


# ---- wrong as YAML, or hostile to the parser -------------------------------------------------------
LOL = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
RAW = [
    ("duplicate top-level key", TINY_TEXT + "name: other\n", "key 'name' given twice in one mapping"),
    ("duplicate nested key", TINY_TEXT.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 3\n"),
     "key 'epochs' given twice"),
    ("duplicate key in a flow mapping", TINY_TEXT.replace("search:\n", "search: {trials: 3, trials: 5}\nx:\n"),
     "key 'trials' given twice"),
    ("duplicate key quoted and plain", "name: a\n'name': b\n", "key 'name' given twice"),
    ("duplicate key in a stage mapping", TINY_TEXT.replace("  form: [none, light, base]\n",
                                                           "  form: [none, light, base]\n  form: [none]\n"),
     "key 'form' given twice"),
    ("deep flow sequence", "name: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 32 levels"),
    ("deep flow mapping", "name: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", "nested more than 32 levels"),
    ("deep block mapping", "".join("  " * i + "a:\n" for i in range(60)) + "  " * 60 + "b: 1\n",
     "nested more than 32 levels"),
    ("billion laughs", "l0: &l0 lol\n" + LOL + "name: *l9\n", "expands to more than 100,000 values"),
    ("billion laughs in a choice list", "l0: &l0 lol\n" + LOL + "name: t\nstages: {form: *l9}\n",
     "expands to more than"),
    ("recursive sequence alias", "name: &a [*a]\n", "a value that contains itself"),
    ("recursive mapping alias", "name: t\nproxy: &p {epochs: 1, more: *p}\n", "a value that contains itself"),
    ("aliases nested deeper than allowed", "".join(f"d{i}: &d{i} [[[[[[[[*d{i - 1}]]]]]]]]\n" if i else
                                                   "d0: &d0 [x]\n" for i in range(6)) + "name: *d5\n",
     "nested more than 32 levels deep through aliases"),
    ("undefined alias", "name: *nowhere\n", "not valid YAML"),
    ("python object tag", "name: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ("python name tag", "name: !!python/name:os.system\n", "not valid YAML"),
    ("custom tag", "name: !include other.yaml\n", "not valid YAML"),
    ("unclosed bracket", "name: [unclosed\n", "not valid YAML"),
    ("tab indentation", "name: t\nproxy:\n\tepochs: 1\n", "not valid YAML"),
    ("two documents", "name: a\n---\nname: b\n", "not valid YAML"),
    ("unhashable key", "? [a, b]\n: 1\nname: t\n", "not valid YAML"),
    ("NUL character", "name: t\x00\n", "not valid YAML"),
    ("empty file", "", "empty"),
    ("only comments", "# nothing here\n# at all\n", "empty"),
    ("top-level list", "- name: t\n", "expected a YAML mapping at the top level, got list"),
    ("top-level scalar", "just words\n", "expected a YAML mapping at the top level, got str"),
    ("binary tag as name", "name: !!binary aGVsbG8=\n", "name=b'hello'"),
    ("date as seed", "name: t\nseed: 2024-01-01\n", "seed=datetime.date(2024, 1, 1)"),
    ("set as choices", "name: t\nstages: {form: !!set {none, light}}\n", "stages.form"),
]
RAW_BYTES = [
    ("not UTF-8 (latin-1)", "name: café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    ("binary garbage", bytes(range(256)) * 8, "not UTF-8 text"),
    ("larger than a MiB", b"name: t\n" + b"# " + b"x" * (1 << 20) + b"\n", "larger than 1,048,576 bytes"),
]


@pytest.mark.parametrize("what,text,expected", RAW, ids=[m[0] for m in RAW])
def test_malformed_yaml_exits_2_with_one_line(what, text, expected, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    _one_line_exit_2(["space", str(path)], capsys, expected)
    assert time.perf_counter() - t0 < 20  # no bomb went off


@pytest.mark.parametrize("what,data,expected", RAW_BYTES, ids=[m[0] for m in RAW_BYTES])
def test_malformed_bytes_exit_2_with_one_line(what, data, expected, tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_bytes(data)
    _one_line_exit_2(["space", str(path)], capsys, expected)


def test_things_that_are_not_files(tmp_path, capsys):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer came: it must not be opened at all
    for path, expected in [(tmp_path, "is a directory"), (fifo, "is not a regular file"),
                           ("/dev/zero", "is not a regular file"), (tmp_path / "nope.yaml", "does not exist")]:
        _one_line_exit_2(["space", str(path)], capsys, expected)


def test_a_huge_sparse_file_is_not_read(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    with open(path, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB of zeros that take no disk: reading them would take minutes
    t0 = time.perf_counter()
    _one_line_exit_2(["space", str(path)], capsys, "larger than 1,048,576 bytes")
    assert time.perf_counter() - t0 < 5


def test_no_code_from_the_file_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    for tag in ("!!python/object/apply:os.system", "!!python/object/apply:subprocess.call"):
        path = tmp_path / "space.yaml"
        path.write_text(f"name: {tag} [['touch', '{marker}']]\n")
        _one_line_exit_2(["space", str(path)], capsys, "not valid YAML")
    assert not marker.exists()


@pytest.mark.parametrize("text,expected", [
    ("arch: {block: basic, block: bottleneck}\n", "key 'block' given twice"),
    ("l0: &l0 lol\n" + LOL + "arch: {block: *l9}\n", "expands to more than"),
    ("arch: &a {stages: [*a]}\n", "a value that contains itself"),
    ("arch: {block: basic, layers: [1], channels: [100000]}\n", "channels=[100000]"),
])
def test_malformed_architecture_files_for_build(text, expected, tmp_path, capsys):
    path = tmp_path / "best.yaml"
    path.write_text(text)
    _one_line_exit_2(["build", str(path)], capsys, expected)


def test_catalogue_size():
    assert len(FIELD) + len(RAW) + len(RAW_BYTES) >= 45
