"""trtkit.tools.metrics against hand-computed values; trtkit.tools.compare on ONNX-vs-ONNX comparisons through
ONNX Runtime."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from support.onnx_factory import conv_relu

from trtkit.backend import Backend
from trtkit.builder import build_engine
from trtkit.cli.main import main
from trtkit.errors import ConfigError, DependencyError, InputError, ShapeError
from trtkit.runtime.compat import run_blocker
from trtkit.tools.compare import compare, generate_inputs, run_onnxruntime
from trtkit.tools.metrics import (
    DEFAULT_TOLERANCES,
    Tolerance,
    compare_outputs,
    cosine_similarity,
    max_abs_error,
    max_rel_error,
    mean_abs_error,
    mismatch_count,
)

pytest.importorskip("onnxruntime", reason="onnxruntime is the accuracy reference (pip install onnxruntime)")


def matmul_model(w: np.ndarray, *, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """x[B, k] @ W[k, n] -> y[B, n]."""
    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "mm",
        [helper.make_tensor_value_info("x", dtype, ["B", k])],
        [helper.make_tensor_value_info("y", dtype, ["B", n])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def scale_model(dtype: int, np_dtype: type) -> onnx.ModelProto:
    """y = x * 0.5 on x[2, 8] in the given element type."""
    half = numpy_helper.from_array(np.array(0.5, dtype=np_dtype), "half")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "half"], ["y"], name="scale")],
        "scale",
        [helper.make_tensor_value_info("x", dtype, [2, 8])],
        [helper.make_tensor_value_info("y", dtype, [2, 8])],
        [half],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


# ---- metrics -------------------------------------------------------------------------------------------------


def test_max_abs_error_is_largest_absolute_difference() -> None:
    assert max_abs_error([1.0, 2.0, 3.0], [1.0, 2.5, 2.0]) == 1.0
    assert max_abs_error(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0


def test_max_rel_error_divides_by_the_reference_and_skips_zero_references() -> None:
    assert max_rel_error([1.1, 2.0, 0.5], [1.0, 2.0, 0.0]) == pytest.approx(0.1)
    assert max_rel_error([3.0, -1.0], [2.0, -4.0]) == pytest.approx(0.75)
    assert max_rel_error([0.5], [0.0]) == 0.0


def test_mismatch_count_uses_allclose_semantics() -> None:
    expected = np.array([1.0, 100.0, 0.0, 5.0])
    # allowed: 1e-5 + 1e-3 * |e| -> 1.01e-3, 0.10001, 1e-5, 5.01e-3
    actual = np.array([1.0005, 100.05, 2e-5, 5.006])
    assert mismatch_count(actual, expected, rtol=1e-3, atol=1e-5) == 2  # the 0.0 and the 5.0 entries
    assert mismatch_count(actual, expected, rtol=1e-3, atol=1e-4) == 1
    assert mismatch_count(actual, expected, rtol=0.0, atol=0.0) == 4


def test_mismatch_count_treats_nan_on_one_side_as_mismatch() -> None:
    nan = float("nan")
    assert mismatch_count([nan, 1.0], [nan, 1.0], rtol=0, atol=0) == 0
    assert mismatch_count([nan, 1.0], [0.0, 1.0], rtol=1, atol=1) == 1
    assert math.isnan(max_abs_error([nan, 1.0], [0.0, 1.0]))


def test_cosine_similarity_matches_hand_values() -> None:
    assert cosine_similarity([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert cosine_similarity([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    assert cosine_similarity([0.0, 0.0], [0.0, 0.0]) == 1.0
    assert cosine_similarity([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_metrics_work_on_float16_and_integer_arrays_in_float64() -> None:
    a = np.array([1.0, 2.0], dtype=np.float16)
    e = np.array([1, 3], dtype=np.int64)
    assert max_abs_error(a, e) == 1.0
    assert max_rel_error(a, e) == pytest.approx(1 / 3)


def test_metrics_reject_different_shapes() -> None:
    with pytest.raises(ShapeError, match=r"\(2,\) and \(3,\)"):
        max_abs_error([1.0, 2.0], [1.0, 2.0, 3.0])


def test_mean_abs_error_averages_absolute_differences() -> None:
    assert mean_abs_error([1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 2.0, 4.0]) == pytest.approx((0.5 + 1.0) / 4)
    assert mean_abs_error(np.zeros(0), np.zeros(0)) == 0.0


def test_default_tolerances_never_tighten_as_mantissa_bits_drop() -> None:
    floats = ["fp32", "tf32", "fp16", "bf16"]  # 23, 10, 10 and 7 mantissa bits
    assert list(DEFAULT_TOLERANCES) == [*floats, "int8", "fp8"]
    for tighter, looser in itertools.pairwise(floats):
        t, lo = DEFAULT_TOLERANCES[tighter], DEFAULT_TOLERANCES[looser]
        assert t.rtol is not None and t.atol is not None and lo.rtol is not None and lo.atol is not None
        assert t.rtol <= lo.rtol and t.atol <= lo.atol
        assert t.min_cosine >= lo.min_cosine and t.max_mismatch <= lo.max_mismatch
    assert DEFAULT_TOLERANCES["tf32"] == DEFAULT_TOLERANCES["fp16"]  # same mantissa width
    assert DEFAULT_TOLERANCES["fp32"].max_mismatch == 0.0  # FP32 allows no element out of bounds
    for quantized in ("int8", "fp8"):  # quantization error is not bounded per element: cosine only
        t = DEFAULT_TOLERANCES[quantized]
        assert t.rtol is None and t.atol is None and 0 < t.min_cosine < DEFAULT_TOLERANCES["bf16"].min_cosine


def test_tolerance_needs_both_bounds_or_neither() -> None:
    with pytest.raises(ConfigError, match="both rtol and atol"):
        Tolerance(rtol=1e-3, atol=None)
    with pytest.raises(ConfigError, match="fraction"):
        Tolerance(rtol=1e-3, atol=1e-3, max_mismatch=2.0)


# ---- the pass rule, on hand-made arrays ------------------------------------------------------------------------


def _ramp() -> np.ndarray:
    """200 reference values in [1, 3): cosine stays near 1 when a few of them move."""
    return np.linspace(1.0, 3.0, 200, endpoint=False)


def _judge(got: np.ndarray, ref: np.ndarray, tolerance: Tolerance) -> bool:
    (out,) = compare_outputs({"y": got}, {"y": ref}, tolerance=tolerance)
    return out.passed


def test_fp16_allows_one_percent_of_elements_out_of_bounds() -> None:
    fp16 = DEFAULT_TOLERANCES["fp16"]
    ref = _ramp()
    one_off, three_off = ref.copy(), ref.copy()
    one_off[10] += 0.1  # bound at ~1.1 is 1e-3 + 1e-2 * 1.1 = 0.012
    three_off[[10, 50, 90]] += 0.1
    (one,) = compare_outputs({"y": one_off}, {"y": ref}, tolerance=fp16)
    (three,) = compare_outputs({"y": three_off}, {"y": ref}, tolerance=fp16)
    assert (one.mismatches, one.size) == (1, 200) and one.passed  # 0.5 % <= 1 %
    assert three.mismatches == 3 and not three.passed  # 1.5 % > 1 %
    assert three.cosine > fp16.min_cosine  # failed on the count alone
    assert any("3/200" in f for f in three.failures)
    assert not _judge(one_off, ref, DEFAULT_TOLERANCES["fp32"])  # fp32 allows none


def test_a_nan_where_the_reference_has_none_fails() -> None:
    ref = _ramp()
    got = ref.copy()
    got[5] = np.nan
    loose = Tolerance(rtol=None, atol=None, min_cosine=0.0)
    (out,) = compare_outputs({"y": got}, {"y": ref}, tolerance=loose)
    assert out.nonfinite == 1 and not out.passed
    assert not _judge(got, ref, DEFAULT_TOLERANCES["fp16"])
    both = ref.copy()
    both[5] = np.nan
    assert _judge(both, both.copy(), DEFAULT_TOLERANCES["fp32"])  # NaN where the reference has NaN is fine


def test_cosine_below_threshold_fails_and_a_near_zero_reference_is_not_checked() -> None:
    ref = np.array([1.0, 0.0])
    got = np.array([1.0, 1.0])  # cosine 1/sqrt(2) = 0.707
    cosine_only = Tolerance(rtol=None, atol=None, min_cosine=0.98)
    (out,) = compare_outputs({"y": got}, {"y": ref}, tolerance=cosine_only)
    assert out.cosine == pytest.approx(1 / math.sqrt(2)) and not out.passed
    assert _judge(got, ref, Tolerance(rtol=None, atol=None, min_cosine=0.7))
    # Elementwise bounds this loose accept every element (|8 - 0| <= 8), but the cosine, 10 / sqrt(164) = 0.78,
    # still fails it.
    big_ref, big_got = np.array([10.0, 0.0]), np.array([10.0, 8.0])
    loose = Tolerance(rtol=0.0, atol=8.0, min_cosine=0.98)
    (out,) = compare_outputs({"y": big_got}, {"y": big_ref}, tolerance=loose)
    assert out.mismatches == 0 and out.cosine == pytest.approx(10 / math.sqrt(164)) and not out.passed
    # A reference all within atol of zero has no meaningful direction: the output is not checked, not passed.
    tiny = np.array([1e-4, 0.0])
    (near_zero,) = compare_outputs({"y": np.array([0.0, 1e-4])}, {"y": tiny}, tolerance=DEFAULT_TOLERANCES["fp16"])
    assert near_zero.status == "not_checked" and not near_zero.passed and not near_zero.failures


def test_shape_or_name_differences_fail_with_the_reason() -> None:
    ref = {"y": np.zeros((2, 3))}
    (wrong_shape,) = compare_outputs({"y": np.zeros((3, 2))}, ref, tolerance=DEFAULT_TOLERANCES["fp32"])
    (missing,) = compare_outputs({"z": np.zeros((2, 3))}, ref, tolerance=DEFAULT_TOLERANCES["fp32"])
    assert not wrong_shape.passed and "3x2" in str(wrong_shape.problem)
    assert not missing.passed and "no output" in str(missing.problem)


# ---- inputs --------------------------------------------------------------------------------------------------


def test_generated_inputs_follow_the_specs_and_the_seed() -> None:
    model = matmul_model(np.ones((4, 3), np.float32))
    a = generate_inputs(model, shapes="x:5x4", seed=1)
    b = generate_inputs(model, shapes={"x": (5, 4)}, seed=1)
    c = generate_inputs(model, shapes="x:5x4", seed=2)
    assert a["x"].shape == (5, 4) and a["x"].dtype == np.float32
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])


def test_generated_integer_inputs_are_small_and_non_negative_and_bools_are_bools() -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT), helper.make_node("Not", ["m"], ["z"])],
        "ints",
        [helper.make_tensor_value_info("i", TensorProto.INT64, [64]),
         helper.make_tensor_value_info("m", TensorProto.BOOL, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64]),
         helper.make_tensor_value_info("z", TensorProto.BOOL, [64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = generate_inputs(model)
    assert feeds["i"].dtype == np.int64 and feeds["i"].min() >= 0 and feeds["i"].max() < 8
    assert feeds["m"].dtype == np.bool_ and feeds["m"].any() and not feeds["m"].all()


def test_dynamic_input_without_shape_names_the_flag_to_use() -> None:
    # Pasteable: the dynamic dim gets a real value (1), and the message says which dim that is.
    with pytest.raises(ShapeError, match=r"--shapes x:1x4 \(the 1 stands for the dynamic B \(axis 0\)"):
        generate_inputs(matmul_model(np.ones((4, 3), np.float32)))


def test_shape_that_contradicts_a_static_dim_is_rejected() -> None:
    with pytest.raises(ShapeError, match="does not fit"):
        generate_inputs(matmul_model(np.ones((4, 3), np.float32)), shapes="x:2x5")


# ---- two ONNX models through ONNX Runtime ---------------------------------------------------------------


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    w2 = w.copy()
    w2[2, 1] += 0.25  # output column 1 changes by 0.25 * x[:, 2]
    ref, same, perturbed = tmp_path / "ref.onnx", tmp_path / "same.onnx", tmp_path / "perturbed.onnx"
    onnx.save(matmul_model(w), ref)
    onnx.save(matmul_model(w), same)
    onnx.save(matmul_model(w2), perturbed)
    return ref, same, perturbed


def test_identical_models_pass_with_zero_error(models: tuple[Path, Path, Path]) -> None:
    ref, same, _ = models
    report = compare(ref, same, shapes="x:6x4")
    assert report.status == "pass" and report.exit_code == 0
    (out,) = report.outputs
    assert (out.name, out.shape, out.max_abs, out.mismatches) == ("y", (6, 3), 0.0, 0)
    assert out.cosine == pytest.approx(1.0)


def test_perturbed_weight_shows_the_expected_error(models: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ref, _, perturbed = models
    x = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, -4.0, 1.0], [3.0, 3.0, 0.5, 3.0]], np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    report = compare(ref, perturbed, inputs=tmp_path / "in.npz")
    (out,) = report.outputs
    assert report.status == "mismatch" and report.exit_code == 4
    assert out.max_abs == pytest.approx(0.25 * 4.0, rel=1e-6)  # largest |x[:, 2]| is 4
    assert out.mismatches == 3  # column 1 of each of the 3 rows moves by >= 0.125
    assert report.seed is None


def test_cli_exit_codes_for_identical_and_perturbed_models(models: tuple[Path, Path, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ref, same, perturbed = models
    assert main(["compare", str(ref), str(same), "--shapes", "x:2x4"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["compare", str(ref), str(perturbed), "--shapes", "x:2x4"]) == 4
    assert "FAIL" in capsys.readouterr().out
    # A loose enough tolerance accepts the perturbation (its cosine is about 0.984, above int8's 0.98) ...
    assert main(["compare", str(ref), str(perturbed), "--shapes", "x:2x4", "--precision", "int8"]) == 0
    assert "PASS" in capsys.readouterr().out
    # ... but an atol far above every output compares nothing: exit 5, and the text does not say PASS.
    assert main(["compare", str(ref), str(perturbed), "--shapes", "x:2x4", "--atol", "100"]) == 5
    out = capsys.readouterr().out
    assert "NOT CHECKED" in out and "PASS" not in out and "--val-range" in out


def test_cli_json_report(models: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ref, _, perturbed = models
    assert main(["compare", str(ref), str(perturbed), "--shapes", "x:3x4", "--seed", "7", "--json"]) == 4
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "mismatch" and data["exit_code"] == 4 and data["seed"] == 7
    assert data["inputs"] == {"x": {"shape": [3, 4], "dtype": "float32"}}
    assert data["outputs"][0]["name"] == "y" and data["outputs"][0]["passed"] is False


def test_usage_and_input_errors_have_their_own_exit_codes(models: tuple[Path, Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ref, same, _ = models
    assert main(["compare"]) == 2
    np.savez(tmp_path / "wrong.npz", z=np.zeros((1, 4), np.float32))
    assert main(["compare", str(ref), str(same), "--inputs", str(tmp_path / "wrong.npz")]) == 1
    err = capsys.readouterr().err
    assert "missing 'x'" in err and "unknown 'z'" in err


def test_wrong_inputs_raise_input_error(models: tuple[Path, Path, Path]) -> None:
    ref, same, _ = models
    with pytest.raises(InputError, match="missing 'x'"):
        compare(ref, same, inputs={"y": np.zeros((1, 4), np.float32)})


def test_float16_conversion_is_fed_cast_inputs_and_passes_at_fp16_tolerance(tmp_path: Path) -> None:
    onnx.save(scale_model(TensorProto.FLOAT, np.float32), tmp_path / "fp32.onnx")
    onnx.save(scale_model(TensorProto.FLOAT16, np.float16), tmp_path / "fp16.onnx")
    report = compare(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx", precision="fp16")
    assert report.passed, report.format()
    assert report.outputs[0].dtype == "float16"
    assert 0 < report.outputs[0].max_rel <= 2**-11  # only the rounding of x to float16
    strict = compare(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx", precision="fp32")
    assert strict.status == "mismatch"


def test_missing_onnxruntime_names_the_install_command(models: tuple[Path, Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ref, same, _ = models
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DependencyError, match="pip install onnxruntime"):
        compare(ref, same, shapes="x:1x4")


def test_runner_falls_back_to_the_reference_evaluator_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    ort_out = run_onnxruntime(matmul_model(w), {"x": x})
    assert ort_out.evaluator == "onnxruntime"
    np.testing.assert_allclose(ort_out["y"], x @ w, rtol=1e-6)
    ref_out = run_onnxruntime(matmul_model(w), {"x": x}, evaluator="reference")
    assert ref_out.evaluator == "onnx-reference"
    np.testing.assert_allclose(ref_out["y"], x @ w, rtol=1e-6)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    auto = run_onnxruntime(matmul_model(w), {"x": x}, evaluator="auto")
    assert auto.evaluator == "onnx-reference"
    np.testing.assert_allclose(auto["y"], x @ w, rtol=1e-6)


# ---- engines -------------------------------------------------------------------------------------------------


def test_engine_that_cannot_run_here_reports_why_with_exit_3(rtx: Backend, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    blocker = run_blocker(rtx)
    if blocker is None:
        pytest.skip("this machine can run TensorRT-RTX engines; the not-run path does not apply")
    model = tmp_path / "conv.onnx"
    onnx.save(conv_relu(), model)
    engine = tmp_path / "conv.engine"
    build_engine(model, shapes={"x": ((1, 3, 8, 8), (2, 3, 16, 16), (4, 3, 32, 32))}, backend=rtx,
                 progress=False).save(engine)
    report = compare(model, engine)
    assert report.status == "not_run" and report.exit_code == 3 and report.reason == blocker
    assert report.precision == "tf32"  # an FP32 build with TF32 allowed, read from the manifest
    assert report.inputs == {"x": ((2, 3, 16, 16), "float32")}  # the profile's opt shape
    assert main(["compare", str(model), str(engine)]) == 3
    assert "cannot run on this machine" in capsys.readouterr().out
