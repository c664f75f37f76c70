"""Saved references across processes, input rules (integer uses, bracketed ranges, data loaders), layer-wise wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtkit.backend import Backend
from trtkit.cli.main import main
from trtkit.errors import ConfigError, InputError, ModelError
from trtkit.tools.compare import compare
from trtkit.tools.inputs import generate_inputs, integer_input_rules, parse_val_range
from trtkit.tools.references import META_KEY, load_references, save_references

pytest.importorskip("onnxruntime", reason="onnxruntime is the accuracy reference (pip install onnxruntime)")

DATA = Path(__file__).parents[1] / "data"


def two_layer(w1: np.ndarray, w2: np.ndarray) -> onnx.ModelProto:
    """x[B, 4] -> MatMul W1 -> Relu -> MatMul W2 -> y[B, 3]."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")],
        "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 5)).astype(np.float32)
    w2 = rng.standard_normal((5, 3)).astype(np.float32)
    w2_bad = w2.copy()
    w2_bad[1, 2] += 0.5
    ref, same, other = tmp_path / "ref.onnx", tmp_path / "same.onnx", tmp_path / "other.onnx"
    onnx.save(two_layer(w1, w2), ref)
    onnx.save(two_layer(w1, w2), same)
    onnx.save(two_layer(w1, w2_bad), other)
    return ref, same, other


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trtkit", "compare", *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


# ---- references across processes -------------------------------------------------------------------------------


def test_references_made_in_one_process_are_loaded_and_checked_in_another(models: tuple[Path, Path, Path],
                                                                          tmp_path: Path) -> None:
    ref, same, other = models
    inp, out = tmp_path / "in.npz", tmp_path / "ref_out.npz"
    made = _cli(ref, same, "--shapes", "x:3x4", "--seed", "5", "--save-inputs", inp, "--save-outputs", out)
    assert made.returncode == 0, made.stderr
    assert inp.is_file() and out.is_file()

    loaded = _cli(ref, same, "--load-inputs", inp, "--load-outputs", out, "--json")
    assert loaded.returncode == 0, loaded.stderr
    data = json.loads(loaded.stdout)
    assert data["reference"].startswith(f"saved outputs {out}") and data["seed"] is None
    assert data["inputs"] == {"x": {"shape": [3, 4], "dtype": "float32"}}

    # The saved reference also judges another candidate: the perturbed copy fails against it.
    assert _cli(ref, other, "--load-inputs", inp, "--load-outputs", out).returncode == 4

    # References made from REF are refused for another model, in one line naming both checksums.
    refused = _cli(other, same, "--load-inputs", inp, "--load-outputs", out)
    assert refused.returncode == 1
    err = refused.stderr.strip()
    assert len(err.splitlines()) == 1 and "made from another model" in err
    ref_sha = json.loads(bytes(np.load(inp)[META_KEY]).decode())["model_sha256"]
    from trtkit.builder.model import load_onnx
    assert ref_sha in err and load_onnx(other).sha256 in err


def test_outputs_of_other_inputs_are_refused(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ref, same, _ = models
    out = tmp_path / "out.npz"
    compare(ref, same, shapes="x:2x4", seed=1, save_outputs=out)
    assert compare(ref, same, shapes="x:2x4", seed=1, load_outputs=out).passed
    with pytest.raises(InputError, match="outputs of other inputs"):
        compare(ref, same, shapes="x:2x4", seed=2, load_outputs=out)


def test_saving_never_overwrites_what_the_run_reads(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ref, same, _ = models
    before = ref.read_bytes()
    with pytest.raises(ConfigError, match="is also an input"):
        compare(ref, same, shapes="x:2x4", save_outputs=ref)
    with pytest.raises(ConfigError, match="is also an input"):
        compare(ref, same, shapes="x:2x4", save_inputs=same)
    np.savez(tmp_path / "in.npz", x=np.ones((2, 4), np.float32))
    with pytest.raises(ConfigError, match="is also an input"):
        compare(ref, same, inputs=tmp_path / "in.npz", save_inputs=tmp_path / "in.npz")
    assert ref.read_bytes() == before


def test_reference_files_round_trip_and_refuse_pickles_and_the_wrong_kind(models: tuple[Path, Path, Path],
                                                                          tmp_path: Path) -> None:
    from trtkit.builder.model import load_onnx

    m = load_onnx(models[0])
    feeds = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    path = save_references(tmp_path / "in.npz", feeds, m, kind="inputs")
    refs = load_references(path, kind="inputs", model=m)
    np.testing.assert_array_equal(refs.arrays["x"], feeds["x"])
    assert refs.meta["model_sha256"] == m.sha256 and refs.meta["arrays"] == {"x": {"dtype": "float32",
                                                                                  "shape": [2, 4]}}
    with pytest.raises(InputError, match="holds saved inputs, not outputs"):
        load_references(path, kind="outputs")
    np.savez(tmp_path / "plain.npz", x=feeds["x"])
    assert load_references(tmp_path / "plain.npz", kind="inputs", model=m).meta == {}  # user data: unchecked
    with pytest.raises(InputError, match="carries no trtkit metadata"):
        load_references(tmp_path / "plain.npz", kind="outputs")
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="no pickled objects"):
        load_references(tmp_path / "pickled.npz", kind="inputs")
    with pytest.raises(ModelError, match="made from another model"):
        load_references(path, kind="inputs", model=load_onnx(models[2]))


# ---- inputs ------------------------------------------------------------------------------------------------------


def gather_model(vocab: int = 11) -> onnx.ModelProto:
    """ids[2, 6] int64 -> Gather(table[vocab, 4]) -> Reshape(shape) -> y: an index and a shape-like input."""
    table = numpy_helper.from_array(np.arange(vocab * 4, dtype=np.float32).reshape(vocab, 4), "table")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),
         helper.make_node("Gather", ["table", "ids32"], ["emb"], axis=0),
         helper.make_node("Reshape", ["emb", "shape"], ["y"]),
         helper.make_node("Add", ["count", "count"], ["c2"])],
        "gather",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 6]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("count", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("c2", TensorProto.INT64, [3])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_integer_inputs_get_ranges_that_fit_their_use() -> None:
    model = gather_model(vocab=11)
    assert integer_input_rules(model) == {"ids": ("index", 11), "shape": ("shape", None), "count": ("count", 8)}
    with pytest.raises(InputError, match=r"input shape .*feeds Reshape"):
        generate_inputs(model)
    feeds = generate_inputs(model, seed=3, shape_values={"shape": (12, 4)})
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].min() >= 0 and feeds["ids"].max() < 11
    assert feeds["ids"].max() >= 8  # the whole table is reachable, not only [0, 8)
    assert feeds["shape"].tolist() == [12, 4]
    assert feeds["count"].min() >= 0 and feeds["count"].max() < 8
    explicit = generate_inputs(model, val_range={"shape": (3, 3), "ids": (0, 1)})  # val_range wins
    assert explicit["shape"].tolist() == [3, 3] and explicit["ids"].max() <= 1


def test_val_range_accepts_the_bracketed_form() -> None:
    assert parse_val_range(["x:[0,1]", "y:[-2, 3]"]) == {"x": (0.0, 1.0), "y": (-2.0, 3.0)}
    assert parse_val_range(["[0,255]"]) == (0.0, 255.0)
    assert parse_val_range(["input_1:0:[0,1]"]) == {"input_1:0": (0.0, 1.0)}
    with pytest.raises(ConfigError, match=r"x:\[0,1\]"):
        parse_val_range(["x:[0]"])


def test_data_loader_feeds_the_first_yielded_dict(models: tuple[Path, Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ref, same, _ = models
    script = tmp_path / "loader.py"
    script.write_text("import numpy as np\n\ndef load_data():\n"
                      "    for i in range(3):\n        yield {'x': np.full((2, 4), i + 1, np.float32)}\n\n"
                      "def other():\n    return [{'x': np.zeros((5, 4), np.float32)}]\n")
    report = compare(ref, same, data_loader=script)
    assert report.passed and report.inputs == {"x": ((2, 4), "float32")} and report.seed is None
    assert "its first feed" in report.format()
    assert compare(ref, same, data_loader=f"{script}:other").inputs == {"x": ((5, 4), "float32")}
    with pytest.raises(InputError, match="defines no function nope"):
        compare(ref, same, data_loader=f"{script}:nope")
    bad = tmp_path / "bad.py"
    bad.write_text("def load_data():\n    raise RuntimeError('no data here')\n")
    assert main(["compare", str(ref), str(same), "--data-loader", str(bad)]) == 1
    assert "RuntimeError: no data here" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not both"):
        compare(ref, same, inputs={"x": np.ones((1, 4), np.float32)}, data_loader=script)


# ---- layer-wise wiring -------------------------------------------------------------------------------------------


def test_layerwise_report_names_the_first_affected_tensor(models: tuple[Path, Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ref, same, other = models
    report = compare(ref, other, shapes="x:4x4", layerwise=True)
    assert report.exit_code == 4 and report.layerwise is not None
    assert report.layerwise.first_failure is not None and report.layerwise.first_failure.name == "y"
    assert [t.name for t in report.layerwise.tensors] == ["h", "r", "y"]
    assert "layer-wise" in report.format() and ">>" in report.format()
    assert report.to_dict()["layerwise"]["first_failure"] == "y"  # type: ignore[index]
    assert compare(ref, same, shapes="x:4x4").to_dict()["layerwise"] is None

    assert main(["compare", str(ref), str(other), "--shapes", "x:4x4", "--layerwise", "--tensors", "h,r",
                 "--json"]) == 4  # the exit status is the outputs'
    data = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in data["layerwise"]["tensors"]] == ["h", "r"]
    assert data["layerwise"]["first_failure"] is None
    with pytest.raises(ConfigError, match="--layerwise"):
        compare(ref, same, shapes="x:4x4", tensors=["h"])


def test_layerwise_fp16_conversion_of_a_real_model_keeps_the_outputs_exit_status(tmp_path: Path) -> None:
    from trtkit.builder.conversion import convert_model

    src = DATA / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    fp16 = convert_model(src, "fp16", converter="onnxconverter-common").save(tmp_path / "cls.fp16.onnx")
    report = compare(src, fp16, shapes="x:1x3x48x192", precision="fp16", layerwise=True)
    assert report.layerwise is not None and len(report.layerwise.tensors) > 50
    assert report.exit_code in (0, 4, 5)  # the final outputs decide; the table is extra
    assert report.status == compare(src, fp16, shapes="x:1x3x48x192", precision="fp16").status


def test_references_made_here_check_an_engine_where_it_runs(rtx: Backend, models: tuple[Path, Path, Path],
                                                            tmp_path: Path) -> None:
    """The CPU half of the cross-machine flow: an engine that cannot run here says so (exit 3) after the saved
    references were read and checked; layer-wise on an engine says the same in one line."""
    from trtkit.builder import build_engine
    from trtkit.runtime.compat import run_blocker

    ref, same, other = models
    engine = tmp_path / "ref.engine"
    build_engine(ref, shapes={"x": ((1, 4), (3, 4), (8, 4))}, backend=rtx, progress=False).save(engine)
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    compare(ref, same, shapes="x:3x4", save_inputs=inp, save_outputs=out)
    report = compare(ref, engine, inputs=inp, load_outputs=out, layerwise=True)
    blocker = run_blocker(rtx)
    if blocker is not None:
        assert report.exit_code == 3 and report.reason == blocker
        assert report.layerwise is not None and "not run" in report.layerwise.format().splitlines()[0]
    assert report.reference.startswith(f"saved outputs {out}")
    with pytest.raises(ModelError, match="made from another model"):
        compare(other, engine, inputs=inp, load_outputs=out, allow_other_model=True)
