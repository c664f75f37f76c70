"""The engine cache: keys, hits, atomic entries, concurrency between processes, size cap."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from support.onnx_factory import conv_relu

import trtkit.cache as cache_mod
from trtkit.backend import Backend
from trtkit.builder import BuildConfig
from trtkit.builder.model import OnnxModel, load_onnx
from trtkit.builder.precision import plan_precision
from trtkit.cache import EngineCache, ModelStep, default_cache_dir, step_model_path
from trtkit.errors import ConfigError
from trtkit.files import LockTimeoutError


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


# ---- faults: bad arguments, read-only caches, killed writers, stopped lock holders ------------------------------




@pytest.mark.parametrize(("kwargs", "named"), [
    ({"directory": 123}, "123"),
    ({"max_bytes": "lots"}, "'lots'"),
    ({"max_bytes": -1}, "-1"),
    ({"max_bytes": True}, "True"),
    ({"max_bytes": 2.5}, "2.5"),
    ({"lock_timeout": -3}, "-3"),
])
def test_bad_arguments_are_config_errors_naming_the_value(tmp_path: Path, kwargs: dict[str, object],
                                                          named: str) -> None:
    kwargs.setdefault("directory", tmp_path)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        EngineCache(**kwargs)  # type: ignore[arg-type]


def test_bad_environment_is_a_config_error_naming_the_variable(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRTKIT_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="TRTKIT_CACHE_MAX_BYTES 'lots'"):
        EngineCache(tmp_path)
    monkeypatch.setenv("TRTKIT_CACHE_MAX_BYTES", "2G")
    assert EngineCache(tmp_path).max_bytes == 2 << 30


def test_cache_path_that_is_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        EngineCache(tmp_path / "f")
    monkeypatch.setenv("TRTKIT_CACHE_DIR", str(tmp_path / "f"))
    with pytest.raises(ConfigError, match="TRTKIT_CACHE_DIR"):
        EngineCache()


def _refuse_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call that would change the file system fails as on a read-only mount."""
    def erofs(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EROFS, "Read-only file system")

    real_open = os.open

    def open_ro(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            erofs()
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_ro)
    for name in ("utime", "replace", "rename", "unlink", "mkdir", "rmdir", "chmod"):
        monkeypatch.setattr(os, name, erofs)


def test_read_only_cache_still_hits_and_a_miss_still_builds(rtx: Backend, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EngineCache(tmp_path)
    model = conv_relu(dims=(1, 3, 8, 8))
    first, _ = cache.get_or_build(model, backend=rtx, progress=False)
    before = sorted(p.name for p in tmp_path.iterdir())
    with monkeypatch.context() as mp:
        _refuse_writes(mp)
        again, hit = cache.get_or_build(model, backend=rtx, progress=False)
        assert hit and again.plan == first.plan
        other, hit = cache.get_or_build(conv_relu(dims=(1, 3, 8, 8), seed=3), backend=rtx, progress=False)
        assert not hit and other.plan
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_directory_still_hits(rtx: Backend, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "c")
    model = conv_relu(dims=(1, 3, 8, 8))
    cache.get_or_build(model, backend=rtx, progress=False)
    (tmp_path / "c").chmod(0o555)
    try:
        assert cache.get_or_build(model, backend=rtx, progress=False)[1]
    finally:
        (tmp_path / "c").chmod(0o755)


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from trtkit.cache import EngineCache
    from trtkit.manifest import BuiltEngine, read_engine_file
    plan, manifest = read_engine_file(sys.argv[2])
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # dies mid-write, as with kill -9
    EngineCache(sys.argv[1]).put("f" * 32, BuiltEngine(plan, manifest))
""")


def test_files_of_a_killed_writer_are_counted_and_pruned(rtx: Backend, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "c")
    built, _ = cache.get_or_build(conv_relu(dims=(1, 3, 8, 8)), backend=rtx, progress=False)
    (entry,) = cache.entries()
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(cache.directory), str(entry.path)],
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL
    strays = cache.strays()
    assert strays and sum(size for _, size in strays) >= len(built.plan)
    assert cache.size() == entry.size + sum(size for _, size in strays)  # counted against the cap
    removed = cache.prune()[1]
    assert {p for p, _ in strays} <= set(removed)
    assert cache.strays() == [] and cache.size() == entry.size
    assert not list(cache.directory.glob("*.lock"))  # the killed writer's lock file is gone too
    assert cache.get(entry.key) is not None


def test_lock_files_do_not_pile_up(rtx: Backend, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    for seed in range(2):
        cache.get_or_build(conv_relu(dims=(1, 3, 8, 8), seed=seed), backend=rtx, progress=False)
    assert not list(tmp_path.glob("*.lock"))


_HOLDER = textwrap.dedent("""
    import sys, time
    from trtkit.files import HolderLock
    with HolderLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def test_waiting_behind_a_stopped_builder_times_out_naming_it(rtx: Backend, tmp_path: Path) -> None:
    model = conv_relu(dims=(1, 3, 8, 8), seed=11)
    cache = EngineCache(tmp_path, lock_timeout=0.5)
    key = cache.key(load_onnx(model), [], BuildConfig(), rtx)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / f"{key}.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)
        with pytest.raises(LockTimeoutError, match=rf"pid {holder.pid} .*\(stopped\)"):
            cache.get_or_build(model, backend=rtx, progress=False)
    finally:
        holder.kill()
        holder.wait()


# ---- a model step before the build (quantization uses it) ---------------------------------------------------


def _renaming_step(calls: list[str], tag: str = "a") -> ModelStep:
    """A step that returns the model with a new graph name (a different model, same engine layers)."""

    def run(model: OnnxModel) -> tuple[OnnxModel, dict[str, object]]:
        calls.append(tag)
        proto = onnx.ModelProto()
        proto.CopyFrom(model.proto)
        proto.graph.name = f"stepped-{tag}"
        return load_onnx(proto), {"tag": tag}

    return ModelStep("renaming", {"tag": tag}, run, suffix="renamed")


def test_a_step_runs_on_a_miss_only_and_its_model_is_kept_beside_the_engine(
        rtx: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EngineCache(tmp_path)
    model = conv_relu(dims=(1, 3, 8, 8))
    calls: list[str] = []
    built, hit = cache.get_or_build(model, backend=rtx, progress=False, step=_renaming_step(calls))
    assert not hit and calls == ["a"]
    key = cache.key(load_onnx(model), [], BuildConfig(), rtx, step=_renaming_step([]))
    kept = step_model_path(cache.path_for(key), "renamed")
    assert kept == tmp_path / f"{key}.engine.renamed.onnx" and kept.is_file()
    assert onnx.load(kept).graph.name == "stepped-a"
    record = built.manifest.extra["renaming"]
    assert record["tag"] == "a" and record["model_sha256"] == load_onnx(kept).sha256
    assert record["source_onnx"]["sha256"] == load_onnx(model).sha256
    assert built.manifest.onnx["sha256"] == record["model_sha256"]  # the engine was built from the step's model
    (entry,) = cache.entries()
    assert entry.size >= kept.stat().st_size + len(built.plan)

    monkeypatch.setattr(cache_mod, "build_engine", lambda *a, **k: pytest.fail("a hit must not build"))
    again, hit = cache.get_or_build(model, backend=rtx, progress=False, step=_renaming_step(calls))
    assert hit and calls == ["a"] and again.manifest == built.manifest


def test_the_step_identity_is_part_of_the_key(rtx: Backend) -> None:
    cache = EngineCache("unused")
    model = load_onnx(conv_relu(dims=(1, 3, 8, 8)))
    plain = cache.key(model, [], BuildConfig(), rtx)
    a = cache.key(model, [], BuildConfig(), rtx, step=_renaming_step([], "a"))
    assert len({plain, a, cache.key(model, [], BuildConfig(), rtx, step=_renaming_step([], "b"))}) == 3
    assert cache.key(model, [], BuildConfig(), rtx, step=_renaming_step([], "a")) == a


def test_removing_an_entry_removes_its_step_model_and_orphans_are_pruned(rtx: Backend, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    for seed in range(2):
        cache.get_or_build(conv_relu(dims=(1, 3, 8, 8), seed=seed), backend=rtx, progress=False,
                           step=_renaming_step([]))
    first, second = cache.entries()
    cache.remove(first.key)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted(
        [f"{second.key}.engine", f"{second.key}.engine.manifest.json", f"{second.key}.engine.renamed.onnx"])
    second.path.unlink()  # a writer that died after the step's model and before the engine leaves this
    orphan = step_model_path(second.path, "renamed")
    assert orphan in [p for p, _ in cache.strays()]
    assert orphan in cache.remove_strays() and not orphan.exists()


def test_a_bad_step_suffix_is_refused() -> None:
    with pytest.raises(ConfigError, match="lowercase letters and digits"):
        ModelStep("x", {}, lambda m: (m, {}), suffix="../evil")
