"""Wrong argument types and values in the builder's Python API raise ConfigError naming the field."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.onnx_factory import conv_relu

from trtkit.backend import Backend, get_backend
from trtkit.builder import BuildConfig, build_engine, parse_size
from trtkit.errors import ConfigError, TrtkitError

STATIC = conv_relu(dims=(1, 3, 8, 8))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"optimization_level": "3"}, "optimization_level"),
    ({"optimization_level": 2.5}, "optimization_level"),
    ({"optimization_level": True}, "optimization_level"),
    ({"builder_threads": -1}, "builder_threads"),
    ({"builder_threads": 0}, "builder_threads"),
    ({"max_aux_streams": -1}, "max_aux_streams"),
    ({"max_aux_streams": "2"}, "max_aux_streams"),
    ({"refit": "yes"}, "refit"),
    ({"tf32": 1}, "tf32"),
    ({"memory_pool_limits": 5}, "memory_pool_limits"),
    ({"memory_pool_limits": {"workspace": -1}}, "workspace"),
    ({"memory_pool_limits": {"workspace": 1.5}}, "workspace"),
    ({"memory_pool_limits": {"workspace": 0}}, "workspace"),
    ({"memory_pool_limits": {"tactic_shared_memory": "0"}}, "tactic_shared_memory"),
    ({"memory_pool_limits": {"workspace": "\u0661G"}}, "workspace"),  # an Arabic-Indic digit one
    ({"plugins": 3}, "plugins"),
    ({"plugins": None}, "plugins"),
    ({"fp32_ops": [1, 2]}, "fp32_ops"),
    ({"tactic_sources": 7}, "tactic_sources"),
    ({"timing_cache": 5}, "timing_cache"),
    ({"precision": ["fp16"]}, "precision"),
    ({"precision": 16}, "precision"),
])
def test_bad_build_config_fields_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        BuildConfig(**kwargs)
    assert field in str(info.value)


def test_good_values_still_accepted() -> None:
    cfg = BuildConfig(optimization_level=0, builder_threads=1, max_aux_streams=0, plugins=["a.so"],
                      memory_pool_limits={"workspace": "1.5G", "tactic_dram": 0}, fp32_ops="Exp")
    assert cfg.plugins == ("a.so",) and cfg.fp32_ops == ("Exp",)
    assert cfg.memory_pool_limits == {"workspace": 3 << 29, "tactic_dram": 0}


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"config": {"precision": "fp16"}}, "BuildConfig(**{'precision': 'fp16'})"),
    ({"config": "fp16"}, "config must be"),
    ({"backend": 123}, "backend must be"),
    ({"cancel": True}, "cancel must be a threading.Event"),
    ({"progress": "yes"}, "progress must be"),
    ({"save_converted_model": 5}, "save_converted_model must be"),
])
def test_bad_build_engine_arguments(rtx: Backend, kwargs: dict[str, Any], needle: str) -> None:
    kwargs.setdefault("backend", rtx)
    with pytest.raises(ConfigError) as info:
        build_engine(STATIC, **kwargs)
    assert needle in str(info.value)


def test_get_backend_rejects_non_strings() -> None:
    for bad in (123, 1.5, ["rtx"], b"rtx"):
        with pytest.raises(ConfigError, match="backend must be"):
            get_backend(bad)  # type: ignore[arg-type]


def test_parse_size_refuses_what_is_not_a_size() -> None:
    for bad in (-1, True, 1.5, None, "\u0664K", "-3M", "1e3"):
        with pytest.raises(ConfigError):
            parse_size(bad)  # type: ignore[arg-type]


_POOLS = st.dictionaries(st.sampled_from(["workspace", "tactic_dram", "vram", ""]),
                         st.one_of(st.integers(-5, 1 << 40), st.text(max_size=5), st.floats()), max_size=2)
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True), st.text(max_size=6),
                    st.lists(st.text(max_size=4), max_size=3), _POOLS)
_FIELDS = st.sampled_from(["precision", "tf32", "memory_pool_limits", "optimization_level", "timing_cache",
                           "profiling_verbosity", "hardware_compatibility", "version_compatible", "refit",
                           "max_aux_streams", "tactic_sources", "compute_capabilities", "builder_threads",
                           "plugins", "fp32_ops", "converter", "exclude_lean_runtime"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_FIELDS, _VALUES, max_size=4))
def test_build_config_is_built_or_refused_with_a_trtkit_error(kwargs: dict[str, Any]) -> None:
    with contextlib.suppress(TrtkitError):
        BuildConfig(**kwargs)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.none(), st.booleans()))
def test_parse_size_is_a_size_or_a_trtkit_error(value: Any) -> None:
    with contextlib.suppress(TrtkitError):
        assert parse_size(value) >= 0
