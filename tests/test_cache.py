"""The engine cache: keys, hits, atomic entries, concurrency between processes, size cap."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from support.onnx_factory import conv_relu

import trtkit.cache as cache_mod
from trtkit.backend import Backend
from trtkit.builder import BuildConfig
from trtkit.builder.model import load_onnx
from trtkit.builder.precision import plan_precision
from trtkit.cache import EngineCache, default_cache_dir


def test_miss_then_hit_without_rebuilding(rtx: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EngineCache(tmp_path)
    model = conv_relu(dims=(1, 3, 8, 8))
    first, hit = cache.get_or_build(model, backend=rtx, progress=False)
    assert not hit

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not build")

    monkeypatch.setattr(cache_mod, "build_engine", no_build)
    second, hit = cache.get_or_build(model, backend=rtx, progress=False)
    assert hit and second.plan == first.plan and second.manifest == first.manifest


def test_key_changes_with_what_changes_the_engine(rtx: Backend) -> None:
    cache = EngineCache("unused")
    model = load_onnx(conv_relu(dims=(1, 3, 8, 8)))
    base = cache.key(model, [], BuildConfig(), rtx)
    assert cache.key(model, [], BuildConfig(timing_cache="t.bin"), rtx) == base  # no effect on the engine
    assert cache.key(model, [], BuildConfig(optimization_level=1), rtx) != base
    assert cache.key(model, [], BuildConfig(compute_capabilities=("8.6",)), rtx) != base
    other = load_onnx(conv_relu(dims=(1, 3, 8, 8), seed=1))
    assert cache.key(other, [], BuildConfig(), rtx) != base


def test_corrupt_entry_is_dropped_and_rebuilt(rtx: Backend, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    model = conv_relu(dims=(1, 3, 8, 8))
    built, _ = cache.get_or_build(model, backend=rtx, progress=False)
    (entry,) = cache.entries()
    entry.path.write_bytes(b"garbage")
    again, hit = cache.get_or_build(model, backend=rtx, progress=False)
    assert not hit and again.manifest.plan_sha256 == built.manifest.plan_sha256


def test_size_cap_evicts_least_recently_used(rtx: Backend, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path, max_bytes="1G")
    for seed in range(3):
        cache.get_or_build(conv_relu(dims=(1, 3, 8, 8), seed=seed), backend=rtx, progress=False)
        os.utime(cache.entries()[-1].path, (1000 + seed, 1000 + seed))
    entries = cache.entries()
    assert len(entries) == 3
    one = entries[0].size
    cache.max_bytes = one * 2 + one // 2
    removed = cache.evict()
    assert removed == [entries[0].key]
    assert [e.key for e in cache.entries()] == [e.key for e in entries[1:]]


def test_default_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRTKIT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def _build_in_process(directory: str, log: str) -> None:
    import trtkit.cache as cm

    real = cm.build_engine

    def counting(*args: object, **kwargs: object) -> object:
        with open(log, "a") as f:
            f.write("built\n")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    cm.build_engine = counting  # type: ignore[assignment]
    EngineCache(directory).get_or_build(conv_relu(dims=(1, 3, 8, 8), seed=7), backend="tensorrt_rtx",
                                        progress=False)


def test_concurrent_processes_build_once(rtx: Backend, tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_build_in_process, args=(str(tmp_path / "cache"), str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert log.read_text().count("built") == 1
    assert len(EngineCache(tmp_path / "cache").entries()) == 1


def test_key_follows_the_converter_version(rtx: Backend) -> None:
    cache = EngineCache("unused")
    model = load_onnx(conv_relu(dims=(1, 3, 8, 8)))
    fp16 = BuildConfig(precision="fp16")

    def key(version: str) -> str:
        plan = plan_precision(rtx.features, fp16, converters={"onnxconverter-common": version})
        return cache.key(model, [], fp16, rtx, precision=plan)

    assert key("1.0") != key("2.0")
    assert key("1.0") == key("1.0")
    assert cache.key(model, [], BuildConfig(), rtx) == cache.key(model, [], BuildConfig(), rtx)


def test_key_names_the_targets_as_the_manifest_does(rtx: Backend) -> None:
    cache = EngineCache("unused")
    model = load_onnx(conv_relu(dims=(1, 3, 8, 8)))
    spelled = [cache.key(model, [], BuildConfig(compute_capabilities=(cc,)), rtx) for cc in ("8.6", "86", "sm_86")]
    assert len(set(spelled)) == 1
