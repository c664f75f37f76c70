"""trtkit compare: what it checks before running (model identity, profiles, sizes) and what it refuses to call a pass.

Engines here are a fake plan with a real manifest (``write_engine_file``): every check under test happens before
a plan is loaded, so no GPU and no TensorRT are needed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from trtkit.builder.model import load_onnx
from trtkit.cli.main import main
from trtkit.errors import ConfigError, InputError, ModelError, ShapeError, TrtkitError
from trtkit.files import sha256_bytes
from trtkit.manifest import Manifest, TensorInfo, write_engine_file
from trtkit.profiles import Profile, ShapeRange
from trtkit.tools.compare import EXIT_NOT_CHECKED, compare, generate_inputs
from trtkit.tools.inputs import parse_val_range
from trtkit.tools.metrics import DEFAULT_TOLERANCES, Tolerance, compare_outputs

pytest.importorskip("onnxruntime", reason="onnxruntime is the accuracy reference (pip install onnxruntime)")

# The modules (trtkit.tools re-exports a function named compare, which shadows the attribute).
compare_module = importlib.import_module("trtkit.tools.compare")
inputs_module = importlib.import_module("trtkit.tools.inputs")


def _scale(factor: float, *, dims: list[int | str] | None = None, name: str = "x") -> onnx.ModelProto:
    """y = x * factor on float32 x of ``dims`` (default [B, 4])."""
    shape: list[int | str] = dims if dims is not None else ["B", 4]
    graph = helper.make_graph(
        [helper.make_node("Mul", [name, "k"], ["y"])], "scale",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.array(factor, np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _fake_engine(path: Path, model: Path, *, profile: tuple[int, int, int] = (1, 2, 4)) -> Path:
    """A plan trtkit cannot load, with a manifest recording ``model``'s hash and one profile x: [lo..hi, 4]."""
    plan = b"not a real plan " + os.urandom(16)
    lo, opt, hi = profile
    manifest = Manifest(
        backend="tensorrt", backend_version="10.9.0.34", target={}, compatibility={},
        onnx={"name": model.name, "sha256": load_onnx(model).sha256}, config={"precision": "fp32", "tf32": False},
        profiles=(Profile({"x": ShapeRange((lo, 4), (opt, 4), (hi, 4))}),),
        tensors=(TensorInfo("x", "input", "float32", (-1, 4)), TensorInfo("y", "output", "float32", (-1, 4))),
        plan_sha256=sha256_bytes(plan), plan_size=len(plan),
    )
    return write_engine_file(path, plan, manifest)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "scale.onnx"
    onnx.save(_scale(2.0), path)
    return path


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is run or generated: the checks under test must come first."""
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("ran or allocated before the check")
    monkeypatch.setattr(compare_module, "run_onnxruntime", boom)
    monkeypatch.setattr(inputs_module, "random_array", boom)
    monkeypatch.setattr(inputs_module, "_draw", boom)


# ---- "not checked" is not a pass -------------------------------------------------------------------------------


def test_a_near_zero_reference_is_not_checked_and_not_a_pass(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    tiny = tmp_path / "tiny.onnx"
    onnx.save(_scale(1e-6), tiny)  # outputs ~1e-6, far inside fp32's atol of 1e-5
    report = compare(tiny, tiny, shapes="x:2x4")
    assert report.status == "not_checked" and report.exit_code == EXIT_NOT_CHECKED == 5
    assert not report.passed and report.not_checked == ("y",)
    assert "PASS" not in report.format() and "NOT CHECKED" in report.format()
    # atol 0 checks the same outputs exactly: now it is a real pass.
    assert compare(tiny, tiny, shapes="x:2x4", atol=0.0).status == "pass"
    assert main(["compare", str(tiny), str(tiny), "--shapes", "x:2x4", "--json"]) == 5
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "not_checked" and data["not_checked"] == ["y"]
    assert data["outputs"][0]["status"] == "not_checked" and data["outputs"][0]["passed"] is False


def test_a_failing_output_outranks_one_not_checked() -> None:
    ref = {"zero": np.zeros(8), "real": np.linspace(1.0, 2.0, 8)}
    got = {"zero": np.zeros(8), "real": np.linspace(1.0, 2.0, 8) + 1.0}
    by_name = {o.name: o for o in compare_outputs(got, ref, tolerance=DEFAULT_TOLERANCES["fp32"])}
    assert by_name["zero"].status == "not_checked" and by_name["real"].status == "fail"


def test_an_all_nan_or_empty_reference_is_not_checked_even_with_atol_zero() -> None:
    exact = Tolerance(rtol=0.0, atol=0.0)
    (nan,) = compare_outputs({"y": np.full(3, np.nan)}, {"y": np.full(3, np.nan)}, tolerance=exact)
    (empty,) = compare_outputs({"y": np.zeros((0, 3))}, {"y": np.zeros((0, 3))}, tolerance=exact)
    assert nan.status == "not_checked" and empty.status == "not_checked"


# ---- sizes are checked before anything is allocated -------------------------------------------------------------


@pytest.mark.parametrize(("spec", "says"), [
    ("x:1099511627776x4", "would need 17.6 TB"),  # 2^40 * 4 float32 = 1.76e13 bytes
    (f"x:{2**31}x4", "would need 34.4 GB"),  # 2^31 * 4 float32 = 3.44e10 bytes
    (f"x:{2**62}x4", "would need"),
    (f"x:{2**63 - 1}x4", "would need"),  # the product overflows int64: still one clear line
    (f"x:{2**63}x4", ""),  # not even a valid dim (the shape parser says so)
])
def test_huge_shapes_are_refused_before_allocating(model: Path, spec: str, says: str, no_run: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs_module, "_memory_limit", lambda: 8 << 30)  # as on a 16 GiB machine, whatever runs this
    with pytest.raises(ShapeError, match=says or None):
        generate_inputs(model, shapes=spec)
    with pytest.raises(ShapeError, match=says or None):
        compare(model, model, shapes=spec)


def test_huge_shapes_are_one_line_on_the_command_line(model: Path, no_run: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(model), str(model), "--shapes", "x:1099511627776x4"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "TB" in err and "Traceback" not in err


@pytest.mark.parametrize("shape", [(0, 4), (-3, 4)])
def test_zero_and_negative_dims_are_refused(model: Path, shape: tuple[int, int], no_run: None) -> None:
    with pytest.raises(ShapeError, match="at least 1"):
        generate_inputs(model, shapes={"x": shape})


def test_zero_size_arrays_given_as_inputs_are_refused(model: Path) -> None:
    with pytest.raises(InputError, match="hold no elements"):
        compare(model, model, inputs={"x": np.zeros((0, 4), np.float32)})


# ---- the engine must come from MODEL, and the shapes must fit it -------------------------------------------------


def test_an_engine_built_from_another_model_is_refused_naming_both_hashes(model: Path, tmp_path: Path,
                                                                          no_run: None) -> None:
    other = tmp_path / "other.onnx"
    onnx.save(_scale(3.0), other)
    engine = _fake_engine(tmp_path / "other.engine", other)
    with pytest.raises(ModelError, match="built from another model") as caught:
        compare(model, engine)
    assert load_onnx(model).sha256 in str(caught.value) and load_onnx(other).sha256 in str(caught.value)
    assert "--allow-other-model" in str(caught.value)


def test_allow_other_model_compares_anyway_and_says_so(model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.onnx"
    onnx.save(_scale(3.0), other)
    engine = _fake_engine(tmp_path / "other.engine", other)
    report = compare(model, engine, allow_other_model=True, backend="tensorrt_rtx")
    assert report.extra["model_check"] == "different"
    assert any("another model" in note for note in report.notes) and "another model" in report.format()
    assert main(["compare", str(model), str(engine)]) == 1
    assert "built from another model" in capsys.readouterr().err


def test_the_engine_of_this_model_passes_the_model_check(model: Path, tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path / "scale.engine", model)
    report = compare(model, engine, backend="tensorrt_rtx")  # the fake plan never loads: not_run or an error
    assert report.extra["model_check"] == "match" and not report.notes


def test_shapes_outside_the_engine_profiles_are_refused_before_running(model: Path, tmp_path: Path,
                                                                       no_run: None) -> None:
    engine = _fake_engine(tmp_path / "scale.engine", model, profile=(1, 2, 4))
    with pytest.raises(ShapeError, match=r"x:8x4 lie outside every optimization profile .*profile 0: x: 1x4 "):
        compare(model, engine, shapes="x:8x4")
    np.savez(tmp_path / "big.npz", x=np.ones((8, 4), np.float32))
    with pytest.raises(ShapeError, match="outside every optimization profile"):
        compare(model, engine, inputs=tmp_path / "big.npz")


# ---- --val-range -------------------------------------------------------------------------------------------------


def _int_and_float_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT), helper.make_node("Relu", ["f"], ["z"])],
        "mixed",
        [helper.make_tensor_value_info("i", TensorProto.INT32, [4096]),
         helper.make_tensor_value_info("f", TensorProto.FLOAT, [4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [4096])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_val_range_bounds_floats_and_ints() -> None:
    feeds = generate_inputs(_int_and_float_model(), val_range=(-3, 5))
    f, i = feeds["f"], feeds["i"]
    assert f.min() >= -3 and f.max() < 5 and f.max() > 4  # uniform, not standard normal
    assert i.dtype == np.int32 and set(np.unique(i)) == set(range(-3, 6))  # integers in [lo, hi], both ends
    named = generate_inputs(_int_and_float_model(), val_range={"f": (10.0, 11.0)})
    assert named["f"].min() >= 10 and named["i"].min() >= 0 and named["i"].max() < 8  # i keeps the default


@pytest.mark.parametrize("bad", [(1, 0), (0, float("inf")), (float("nan"), 1), ("0", "1"), (0,), 5, (0.2, 0.8)])
def test_bad_val_ranges_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="val_range"):
        generate_inputs(_int_and_float_model(), val_range=bad)  # type: ignore[arg-type]


def test_val_range_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_val_range(["-1,1"]) == (-1.0, 1.0)
    assert parse_val_range(["input_1:0:0,255"]) == {"input_1:0": (0.0, 255.0)}  # split at the last ':'
    assert parse_val_range([]) is None
    tiny = tmp_path / "tiny.onnx"
    onnx.save(_scale(1e-6), tiny)
    # Outputs of ~1e-6 are not checked at atol 1e-5; inputs in [1e5, 2e5) make them ~0.1 to 0.2: checked.
    assert main(["compare", str(tiny), str(tiny), "--shapes", "x:2x4", "--val-range", "1e5,2e5"]) == 0
    assert "range (100000.0, 200000.0)" in capsys.readouterr().out
    assert main(["compare", str(tiny), str(tiny), "--shapes", "x:2x4", "--val-range", "1,2,3"]) == 1
    assert "expected LO,HI" in capsys.readouterr().err


# ---- property: success or a TrtkitError ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=24), max_size=3))
def test_val_range_parsing_fails_only_with_trtkit_errors(specs: list[str]) -> None:
    with contextlib.suppress(TrtkitError):
        parse_val_range(specs)


_MODEL = _scale(2.0)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=30),
                 st.dictionaries(st.text(max_size=3), st.lists(st.integers(-2**64, 2**64), max_size=3), max_size=2)),
       st.one_of(st.none(), st.tuples(st.floats(), st.floats()), st.integers(), st.text(max_size=5)))
def test_input_generation_fails_only_with_trtkit_errors(shapes: object, val_range: object) -> None:
    try:
        feeds = generate_inputs(_MODEL, shapes=shapes, val_range=val_range)  # type: ignore[arg-type]
    except TrtkitError:
        return
    assert feeds["x"].shape[1] == 4 and feeds["x"].size > 0
