"""Property tests for the Triton export: any name, version or option gives a valid export or a TrtkitError.

The engine is a fake full-TensorRT plan with a real manifest: the export reads only the manifest, never the plan.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trtkit.errors import TrtkitError
from trtkit.files import sha256_bytes
from trtkit.manifest import Manifest, TensorInfo, write_engine_file
from trtkit.profiles import Profile, ShapeRange
from trtkit.tools.triton import export_triton, triton_config

_VALID = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.\-]{1,255}")  # not "." or ".." (directory names)

_MANIFEST_PLAN = b"fake plan " + os.urandom(16)
_MANIFEST = Manifest(
    backend="tensorrt", backend_version="10.9.0.34", target={"gpu": "NVIDIA L4", "compute_capability": "8.9"},
    compatibility={}, onnx={"name": "fake"}, config={},
    profiles=(Profile({"x": ShapeRange((1, 4), (8, 4), (16, 4))}),),
    tensors=(TensorInfo("x", "input", "float32", (-1, 4)), TensorInfo("y", "output", "float32", (-1, 4))),
    plan_sha256=sha256_bytes(_MANIFEST_PLAN), plan_size=len(_MANIFEST_PLAN),
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_engine_file(tmp_path_factory.mktemp("fuzz") / "fake.engine", _MANIFEST_PLAN, _MANIFEST)


_names = st.one_of(
    st.text(max_size=20),
    st.from_regex(_VALID, fullmatch=True),
    st.from_regex(_VALID, fullmatch=True).map(lambda s: s + "\n"),
    st.text(alphabet="ab.-_/\\\n\r\x00\x1b :", max_size=8),
    st.just("x" * 256),
    st.integers(), st.none(), st.binary(max_size=4),
)
_versions = st.one_of(st.integers(min_value=-2, max_value=3), st.integers(min_value=2**63 - 2, max_value=2**64),
                      st.integers(), st.booleans(), st.floats(), st.text(max_size=3))
_small_ints = st.one_of(st.none(), st.integers(min_value=-2, max_value=40), st.integers(), st.booleans(),
                        st.text(max_size=2))


@settings(max_examples=200, deadline=None)
@given(name=_names, version=_versions)
def test_export_names_and_versions_give_an_export_or_a_trtkit_error(engine: Path, name: Any, version: Any) -> None:
    with tempfile.TemporaryDirectory() as repo:
        try:
            result = export_triton(engine, repo, name=name, version=version)
        except TrtkitError:
            assert not any(Path(repo).iterdir())  # refused: nothing written
            return
        # Accepted: the name (None: the engine's stem) is valid as a whole string and the version fits int64.
        name = "fake" if name is None else name
        assert isinstance(name, str) and _VALID.fullmatch(name)
        assert isinstance(version, int) and not isinstance(version, bool) and 0 <= version <= 2**63 - 1
        assert result.plan_path == Path(repo) / name / str(version) / "model.plan"
        assert result.plan_path.read_bytes() == _MANIFEST_PLAN


@settings(max_examples=200, deadline=None)
@given(max_batch_size=_small_ints, instances=_small_ints, max_queue_delay_us=_small_ints,
       dynamic_batching=st.one_of(st.none(), st.booleans(), st.integers(0, 1)),
       preferred=st.one_of(st.none(), st.lists(st.one_of(st.integers(-2, 20), st.text(max_size=1)), max_size=3)),
       gpus=st.one_of(st.none(), st.lists(st.integers(-1, 2**32), max_size=3), st.text(max_size=2)))
def test_config_options_give_a_config_or_a_trtkit_error(max_batch_size: Any, instances: Any,
                                                        max_queue_delay_us: Any, dynamic_batching: Any,
                                                        preferred: Any, gpus: Any) -> None:
    try:
        cfg = triton_config(_MANIFEST, name="m", max_batch_size=max_batch_size, instances=instances,
                            max_queue_delay_us=max_queue_delay_us, dynamic_batching=dynamic_batching,
                            preferred_batch_sizes=preferred, gpus=gpus)
    except TrtkitError:
        return
    assert 0 <= cfg.max_batch_size <= 16  # the profile's max batch
    assert f"max_batch_size: {cfg.max_batch_size}" in cfg.text


def test_the_name_is_matched_as_a_whole_string(engine: Path, tmp_path: Path) -> None:
    # Regression: re.match with '$' let a trailing newline through, creating a directory named "m\n".
    with pytest.raises(TrtkitError, match="not a valid Triton model name"):
        export_triton(engine, tmp_path, name="m\n")
    assert list(tmp_path.iterdir()) == []
