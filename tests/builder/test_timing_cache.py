"""The timing cache file: load before the build, merge with what another process saved, write atomically.

TensorRT-RTX has no timing cache (its calls are no-ops), so the TensorRT side is a small fake that follows
ITimingCache's documented semantics: ``combine`` adds the other cache's entries.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from trtkit.builder.timing_cache import TimingCacheFile
from trtkit.errors import TrtkitError


class FakeCache:
    def __init__(self, entries: dict[str, int]) -> None:
        self.entries = dict(entries)

    def serialize(self) -> bytes:
        return json.dumps(self.entries, sort_keys=True).encode()

    def combine(self, other: FakeCache, ignore_mismatch: bool) -> bool:
        for k, v in other.entries.items():
            self.entries.setdefault(k, v)
        return True


class FakeConfig:
    def __init__(self) -> None:
        self.cache: FakeCache | None = None

    def create_timing_cache(self, blob: bytes) -> FakeCache | None:
        if not blob:
            return FakeCache({})
        try:
            return FakeCache(json.loads(blob))
        except ValueError:
            return None

    def set_timing_cache(self, cache: FakeCache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> FakeCache | None:
        return self.cache


def test_two_builders_merge_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    a, b = FakeConfig(), FakeConfig()
    TimingCacheFile(path).attach(a)
    TimingCacheFile(path).attach(b)  # both start from the same (empty) file, as concurrent builds do
    assert a.cache is not None and b.cache is not None
    a.cache.entries["conv"] = 1
    b.cache.entries["gemm"] = 2
    TimingCacheFile(path).save(a)
    TimingCacheFile(path).save(b)  # must not drop a's entry
    assert json.loads(path.read_bytes()) == {"conv": 1, "gemm": 2}
    c = FakeConfig()
    TimingCacheFile(path).attach(c)
    assert c.cache is not None and c.cache.entries == {"conv": 1, "gemm": 2}


def test_unreadable_file_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(b"\x00garbage")
    cfg = FakeConfig()
    TimingCacheFile(path).attach(cfg)
    assert cfg.cache is not None and cfg.cache.entries == {}


def test_saved_file_follows_the_umask_and_leaves_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    cfg = FakeConfig()
    old = os.umask(0o022)
    try:
        TimingCacheFile(path).attach(cfg)
        TimingCacheFile(path).save(cfg)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by a server running as another user
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.cache"]


def test_a_directory_as_the_timing_cache_is_one_trtkit_error(tmp_path: Path) -> None:
    cfg = FakeConfig()
    TimingCacheFile(tmp_path).attach(cfg)  # nothing to read: starts empty
    with pytest.raises(TrtkitError, match="is a directory") as info:
        TimingCacheFile(tmp_path).save(cfg)
    assert "\n" not in str(info.value)
