"""Profiles: trtexec syntax, the accepted Python forms, and validation against model inputs (no TensorRT)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtkit.backend import Backend
from trtkit.errors import ShapeError
from trtkit.profiles import (
    InputInfo,
    Profile,
    ShapeRange,
    normalize_profiles,
    parse_shape_spec,
    profiles_from_trtexec,
    resolve_profiles,
)

IMAGE = InputInfo("x", (-1, 3, -1, -1), "float32", ("N", None, "H", "W"))
MASK = InputInfo("mask", (1, 16), "int32")


def test_parse_shape_spec_trtexec_syntax() -> None:
    assert parse_shape_spec("x:1x3x224x224,mask:1x16") == {"x": (1, 3, 224, 224), "mask": (1, 16)}


def test_parse_shape_spec_quoted_names_with_colons() -> None:
    assert parse_shape_spec("'input:0':1x3,'a,b':2") == {"input:0": (1, 3), "a,b": (2,)}


def test_parse_shape_spec_scalar() -> None:
    assert parse_shape_spec("s:") == {"s": ()}


@pytest.mark.parametrize("bad", ["x", "x:1x3xA", ":1x3", "x:1,x:2", "'x:1"])
def test_parse_shape_spec_rejects_malformed(bad: str) -> None:
    with pytest.raises(ShapeError):
        parse_shape_spec(bad)


def test_trtexec_flags_make_one_profile_per_occurrence() -> None:
    profiles = profiles_from_trtexec(
        min_shapes=["x:1x3x32x32", "x:8x3x32x32"],
        opt_shapes=["x:4x3x64x64", "x:16x3x64x64"],
        max_shapes=["x:8x3x128x128", "x:32x3x128x128"],
    )
    assert len(profiles) == 2
    assert profiles[1]["x"] == ShapeRange((8, 3, 32, 32), (16, 3, 64, 64), (32, 3, 128, 128))


def test_trtexec_missing_opt_defaults_to_max_and_shapes_are_fixed() -> None:
    (profile,) = profiles_from_trtexec(shapes=["mask:1x16"], min_shapes=["x:1x3x8x8"], max_shapes=["x:4x3x8x8"])
    assert profile["x"].opt == (4, 3, 8, 8)
    assert profile["mask"].is_fixed and profile["mask"].opt == (1, 16)


def test_normalize_accepts_user_forms() -> None:
    forms = normalize_profiles({"x": (1, 3, 8, 8), "y": ((1, 2), (2, 2), (4, 2)), "z": "2x2"})
    assert forms[0]["x"].is_fixed
    assert forms[0]["y"].max == (4, 2)
    assert forms[0]["z"].opt == (2, 2)
    assert normalize_profiles("x:1x3") == [Profile({"x": ShapeRange.fixed((1, 3))})]
    assert len(normalize_profiles([{"x": (1,)}, "x:2"])) == 2
    with pytest.raises(ShapeError):
        normalize_profiles(42)


def test_shape_range_rank_must_agree() -> None:
    with pytest.raises(ShapeError, match="same rank"):
        ShapeRange((1, 3), (1, 3, 3), (1, 3))


def test_resolve_derives_profile_for_static_model() -> None:
    (profile,) = resolve_profiles([], [MASK])
    assert profile["mask"] == ShapeRange.fixed((1, 16))


def test_resolve_names_dynamic_dims_and_flag_when_no_shapes() -> None:
    with pytest.raises(ShapeError) as info:
        resolve_profiles([], [IMAGE, MASK])
    msg = str(info.value)
    assert "x (float32 [N, 3, H, W])" in msg
    assert "0 (N), 2 (H), 3 (W)" in msg
    assert "--minShapes=x:1x3x1x1 --optShapes=x:1x3x1x1 --maxShapes=x:1x3x1x1" in msg
    assert "replace 'x' dims 0 (N), 2 (H), 3 (W)" in msg


def test_resolve_rejects_unknown_name_with_suggestion() -> None:
    with pytest.raises(ShapeError, match=r"'xx'.*Did you mean 'x'"):
        resolve_profiles(normalize_profiles({"xx": (1, 3, 8, 8)}), [IMAGE])


def test_resolve_rejects_wrong_rank() -> None:
    with pytest.raises(ShapeError, match="rank 4"):
        resolve_profiles(normalize_profiles({"x": (1, 3, 8)}), [IMAGE])


def test_resolve_rejects_changed_static_dim() -> None:
    with pytest.raises(ShapeError, match="dim 1 is fixed to 3"):
        resolve_profiles(normalize_profiles({"x": (1, 4, 8, 8)}), [IMAGE])


def test_resolve_rejects_min_above_opt() -> None:
    bad = {"x": ((2, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))}
    with pytest.raises(ShapeError, match="min <= opt <= max"):
        resolve_profiles(normalize_profiles(bad), [IMAGE])


def test_resolve_fills_static_inputs_and_requires_every_dynamic_one() -> None:
    (profile,) = resolve_profiles(normalize_profiles({"x": (1, 3, 8, 8)}), [IMAGE, MASK])
    assert profile["mask"] == ShapeRange.fixed((1, 16))
    other = InputInfo("y", (-1, 4), "float32")
    with pytest.raises(ShapeError, match="profile 0 leaves them out"):
        resolve_profiles(normalize_profiles({"x": (1, 3, 8, 8)}), [IMAGE, other])


def test_shape_tensor_inputs_take_values() -> None:
    shape_input = InputInfo("shape", (2,), "int64", is_shape_tensor=True)
    with pytest.raises(ShapeError, match="shape tensor"):
        resolve_profiles([], [shape_input])
    (profile,) = resolve_profiles(normalize_profiles({"shape": ((1, 1), (3, 4), (12, 12))}), [shape_input])
    assert profile["shape"].min == (1, 1)
    with pytest.raises(ShapeError, match="2 values"):
        resolve_profiles(normalize_profiles({"shape": (1, 2, 6)}), [shape_input])


def test_profile_round_trips_through_dict() -> None:
    p = Profile({"x": ShapeRange((1, 3), (2, 3), (4, 3))})
    assert Profile.from_dict(p.to_dict()) == p
    assert ShapeRange((1, 3), (2, 3), (4, 3)).contains((3, 3))
    assert not ShapeRange((1, 3), (2, 3), (4, 3)).contains((5, 3))


# ---- issue 11: names with ':', sizes, missing opt, non-ASCII digits -------------------------------------------


def test_name_ends_at_last_colon_as_in_trtexec() -> None:
    assert parse_shape_spec("input_1:0:1x3x224x224,mask:0:1x16") == {
        "input_1:0": (1, 3, 224, 224), "mask:0": (1, 16)}
    assert parse_shape_spec("'input_1:0':1x3x224x224") == {"input_1:0": (1, 3, 224, 224)}
    (profile,) = profiles_from_trtexec(min_shapes=["input_1:0:1x3"], max_shapes=["'input_1:0':8x3"])
    assert profile["input_1:0"] == ShapeRange((1, 3), (8, 3), (8, 3))


@pytest.mark.parametrize("spec", ["x:\uff11x\uff13", "x:1x\u0663", "x:1_000", "x:+1", "x:1x 2", "x:0x1e3"])
def test_non_ascii_or_odd_digits_are_refused(spec: str) -> None:
    with pytest.raises(ShapeError, match="ASCII digits"):
        parse_shape_spec(spec)


@pytest.mark.parametrize("dims", ["2147483648x3", "9223372036854775807x3", "9223372036854775808x3",
                                  "18446744073709551616x3"])
def test_huge_dims_are_a_shape_error(dims: str) -> None:
    with pytest.raises(ShapeError, match=r"2147483647|64-bit"):
        resolve_profiles(profiles_from_trtexec(max_shapes=[f"x:{dims}"], min_shapes=["x:1x3"]),
                         [InputInfo("x", (-1, 3), "float32")])


def test_volume_overflow_is_a_shape_error() -> None:
    big = "x".join(["2147483647"] * 3)
    with pytest.raises(ShapeError, match="elements"):
        resolve_profiles(profiles_from_trtexec(shapes=[f"x:{big}"]), [InputInfo("x", (-1, -1, -1), "float32")])


@pytest.mark.parametrize("spec", ["x:0x3", "x:1x0"])
def test_zero_size_dims_are_refused(spec: str) -> None:
    with pytest.raises(ShapeError, match="zero-size dim"):
        resolve_profiles(profiles_from_trtexec(shapes=[spec]), [InputInfo("x", (-1, -1), "float32")])


def test_profile_without_opt_uses_max_in_python_too() -> None:
    (p,) = normalize_profiles({"x": {"min": (1, 3), "max": (8, 3)}})
    assert p["x"] == ShapeRange((1, 3), (8, 3), (8, 3))
    assert Profile.from_dict({"x": {"min": [1, 3], "max": [8, 3]}})["x"].opt == (8, 3)


def test_two_shapes_ask_for_min_opt_max() -> None:
    with pytest.raises(ShapeError, match=r"\(min, opt, max\)"):
        normalize_profiles({"x": ((1, 3), (8, 3))})


def test_unknown_range_keys_are_named() -> None:
    with pytest.raises(ShapeError, match="'min', 'opt' and 'max'"):
        normalize_profiles({"x": {"low": (1, 3)}})


def _tf2onnx_style_model() -> bytes:
    """A model whose input is named as tf2onnx names them: ``input_1:0``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input_1:0"], ["Identity:0"], name="relu")], "tf2onnx_like",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["unk__0", 3, 8, 8])],
        [helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, ["unk__0", 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_build_model_with_colon_input_names(rtx: Backend) -> None:
    from trtkit.builder import build_engine

    built = build_engine(_tf2onnx_style_model(), backend=rtx, progress=False,
                         shapes=profiles_from_trtexec(min_shapes=["input_1:0:1x3x8x8"],
                                                      max_shapes=["'input_1:0':4x3x8x8"]))
    (profile,) = built.manifest.profiles
    assert profile["input_1:0"] == ShapeRange((1, 3, 8, 8), (4, 3, 8, 8), (4, 3, 8, 8))


def test_cli_builds_model_with_colon_input_names(rtx: Backend, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from trtkit.cli.main import main
    from trtkit.manifest import read_engine_file

    model = tmp_path / "tf.onnx"
    model.write_bytes(_tf2onnx_style_model())
    out = tmp_path / "tf.engine"
    rc = main(["build", str(model), "-o", str(out), "--backend", "tensorrt_rtx", "--no-progress",
               "--minShapes=input_1:0:1x3x8x8", "--optShapes='input_1:0':2x3x8x8",
               "--maxShapes=input_1:0:4x3x8x8"])
    assert rc == 0, capsys.readouterr().err
    _, manifest = read_engine_file(out)
    assert manifest is not None
    assert manifest.profiles[0]["input_1:0"] == ShapeRange((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))


def test_scalar_max_without_opt_is_a_scalar_range() -> None:
    # found by Hypothesis: an empty (scalar) max shape was treated as missing and raised KeyError
    (profile,) = profiles_from_trtexec(max_shapes=["x:"])
    assert profile["x"] == ShapeRange((), (), ())


@pytest.mark.parametrize("bad", [None, {"x": None}, {"x": [1, 2]}, "x:1"])
def test_profile_from_dict_refuses_other_forms(bad: object) -> None:
    with pytest.raises(ShapeError):
        Profile.from_dict(bad)  # type: ignore[arg-type]
