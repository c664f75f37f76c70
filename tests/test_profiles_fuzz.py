"""Property tests: shape strings, profiles and runtime input checks end in a result or a TrtkitError, never in
another exception (no TensorRT needed)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trtkit import dtypes
from trtkit.errors import TrtkitError
from trtkit.profiles import (
    InputInfo,
    Profile,
    ShapeRange,
    normalize_profiles,
    parse_shape_spec,
    profiles_from_trtexec,
    resolve_profiles,
)
from trtkit.runtime.tensors import ArrayInfo, TensorSpec, select_profile, validate_inputs

FAST = settings(max_examples=200, deadline=None)

NAMES = st.sampled_from(["x", "input_1:0", "a,b", "mask", "'q'", "", " ", "é", "x\x1b[31m"])
DIM_TEXT = st.one_of(
    st.integers(-3, 2**64).map(str),
    st.sampled_from(["", "scalar", "\uff11", "1_0", "+1", "-1", " 2", "0x10", "1e3", "\u0663"]),
)
ITEM = st.tuples(NAMES, st.booleans(), st.lists(DIM_TEXT, max_size=5)).map(
    lambda t: (f"'{t[0]}'" if t[1] else t[0]) + ":" + "x".join(t[2]))
SPEC = st.one_of(st.lists(ITEM, max_size=4).map(",".join), st.text(max_size=40))
DIMS = st.one_of(st.integers(-2, 2**64), st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63]))
SHAPE = st.lists(DIMS, max_size=5).map(tuple)
ANY_VALUE: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**64), st.floats(allow_nan=True), st.text(max_size=12),
              SHAPE),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(NAMES, st.sampled_from(["min", "opt", "max"]), st.integers()),
                                            inner, max_size=3)),
    max_leaves=12,
)


def _clean(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except TrtkitError:
        return None


@FAST
@given(SPEC)
def test_parse_shape_spec_is_a_result_or_a_trtkit_error(spec: str) -> None:
    result = _clean(parse_shape_spec, spec)
    if result is not None:
        assert all(isinstance(k, str) and k for k in result)
        assert all(all(isinstance(d, int) for d in dims) for dims in result.values())


@FAST
@given(st.lists(SPEC, max_size=2), st.lists(SPEC, max_size=2), st.lists(SPEC, max_size=2), st.lists(SPEC, max_size=2))
def test_trtexec_flags_are_a_result_or_a_trtkit_error(a: list[str], b: list[str], c: list[str], d: list[str]) -> None:
    for profile in _clean(profiles_from_trtexec, a, b, c, d) or []:
        assert isinstance(profile, Profile)


@FAST
@given(ANY_VALUE)
def test_python_profile_forms_are_a_result_or_a_trtkit_error(value: Any) -> None:
    for profile in _clean(normalize_profiles, value) or []:
        assert all(isinstance(r, ShapeRange) for r in profile.ranges.values())
    _clean(Profile.from_dict, value)


INPUT = st.builds(
    InputInfo, name=NAMES, shape=st.lists(st.sampled_from([-1, 1, 3, 8, 0]), max_size=4).map(tuple),
    dtype=st.just("float32"), dim_names=st.lists(st.sampled_from([None, "N", "H"]), max_size=4).map(tuple),
    is_shape_tensor=st.booleans(),
)


@FAST
@given(st.lists(INPUT, max_size=3, unique_by=lambda i: i.name), st.lists(ANY_VALUE, max_size=2))
def test_resolve_profiles_is_a_result_or_a_trtkit_error(inputs: list[InputInfo], raw: list[Any]) -> None:
    profiles = _clean(normalize_profiles, raw)
    if profiles is None:
        return
    for profile in _clean(resolve_profiles, profiles, inputs) or []:
        for info in inputs:
            assert info.name in profile


@FAST
@given(st.lists(SHAPE, min_size=3, max_size=3))
def test_resolve_accepts_only_sane_ranges(parts: list[tuple[int, ...]]) -> None:
    lo, opt, hi = parts
    rank = len(lo)
    info = InputInfo("x", (-1,) * rank, "float32")
    try:
        (profile,) = resolve_profiles([Profile({"x": ShapeRange(lo, opt, hi)})], [info])
    except TrtkitError:
        return
    rng = profile["x"]
    assert all(1 <= a <= b <= c <= 2**31 - 1 for a, b, c in zip(rng.min, rng.opt, rng.max, strict=True))


DTYPES = st.sampled_from(["float32", "float16", "int32", "float64", "bool", "", "complex64"])
SPEC_T = st.builds(
    lambda name, shape, dt, shp, profs: TensorSpec(
        name=name, mode="input", dtype=dtypes.lookup(dt), shape=shape, is_shape_tensor=shp,
        location="host" if shp else "device", profiles=profs),
    NAMES, st.lists(st.sampled_from([-1, 1, 2, 3]), max_size=3).map(tuple),
    st.sampled_from(["float32", "float16", "int32"]), st.booleans(),
    st.just(()),
)
ARRAY = st.builds(
    ArrayInfo, kind=st.sampled_from(["host", "device"]), shape=SHAPE, dtype=DTYPES, contiguous=st.booleans(),
    device=st.integers(-1, 2),
)


@FAST
@given(st.lists(SPEC_T, max_size=3, unique_by=lambda s: s.name), st.dictionaries(NAMES, ARRAY, max_size=3),
       st.integers(-1, 2))
def test_validate_inputs_is_ok_or_an_input_error(specs: list[TensorSpec], arrays: dict[str, ArrayInfo],
                                                 device: int) -> None:
    _clean(validate_inputs, specs, arrays, device=device)


@FAST
@given(st.lists(st.lists(SHAPE, min_size=3, max_size=3), min_size=1, max_size=3), SHAPE, st.integers(-1, 4))
def test_select_profile_is_a_profile_or_an_input_error(ranges: list[list[tuple[int, ...]]], shape: tuple[int, ...],
                                                       prefer: int) -> None:
    profs = []
    for lo, opt, hi in ranges:
        rng = _clean(ShapeRange, lo, opt, hi)
        if rng is None:
            return
        profs.append(rng)
    spec = TensorSpec(name="x", mode="input", dtype=dtypes.lookup("float32"), shape=(-1,) * len(profs[0].min),
                      profiles=tuple(profs))
    index = _clean(select_profile, [spec], {"x": shape}, prefer=prefer)
    if index is not None:
        assert profs[index].contains(shape)
