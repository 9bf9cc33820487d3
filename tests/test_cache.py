"""The target cache: stable keys, safe verified values, two layers, and never fatal."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import diskcache
import pytest
import torch

import stylepipe
from stylepipe.targets import cache as cache_module
from stylepipe.targets.cache import TargetCache
from stylepipe.targets.frames import CACHE_FORMAT_VERSION, CorruptEntry, decode_tensors, encode_tensors
from stylepipe.targets.keys import make_key

REPO_ROOT = Path(stylepipe.__file__).resolve().parents[1]


def _frame(payload: bytes) -> bytes:
    """Wrap bytes in a valid header (as the format documents it) to reach torch.load."""
    return b"SPTC" + bytes([CACHE_FORMAT_VERSION]) + hashlib.sha256(payload).digest() + payload


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class _Evil:
    """Unpickling this writes a marker file: proof that something was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


def _targets(seed: int = 0, big: bool = False) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    side = 128 if big else 4  # 128*128*4 bytes = 64 KiB > diskcache's 32 KiB file threshold
    return {
        "relu1_1": torch.randn(side, side, generator=generator),
        "relu2_1": torch.randn(3, generator=generator).to(torch.float16),
    }


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype
        assert torch.equal(a[name], b[name]), name


def _broken_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.broken-*"))


# -- make_key ---------------------------------------------------------------------------


def test_make_key_is_stable_across_dict_order() -> None:
    a = make_key("gram", 1, {"style": "abc", "layers": ["relu1_1", "relu2_1"], "size": 512})
    b = make_key("gram", 1, {"size": 512, "layers": ["relu1_1", "relu2_1"], "style": "abc"})
    assert a == b
    assert a.startswith("gram/v1/")
    assert len(a.rsplit("/", 1)[1]) == 64


def test_make_key_changes_with_payload_namespace_and_version() -> None:
    base = make_key("gram", 1, {"layers": ["relu1_1", "relu2_1"]})
    # the order of layers is meaningful, so it must change the key
    assert make_key("gram", 1, {"layers": ["relu2_1", "relu1_1"]}) != base
    assert make_key("gram", 2, {"layers": ["relu1_1", "relu2_1"]}).startswith("gram/v2/")
    assert make_key("other", 1, {"layers": ["relu1_1", "relu2_1"]}).startswith("other/v1/")
    assert make_key("gram", 1, {"layers": ["relu1_1"]}) != base


@pytest.mark.parametrize(
    "payload",
    [{"path": Path("x.jpg")}, {"blob": b"bytes"}, {"t": torch.ones(1)}, {"n": float("nan")}],
)
def test_make_key_rejects_non_json_payloads(payload: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        make_key("gram", 1, payload)


# -- encode / decode --------------------------------------------------------------------


def test_round_trip_preserves_values_and_dtypes() -> None:
    tensors = {
        "f32": torch.randn(5, 7),
        "f16": torch.randn(3, 3).to(torch.float16),
        "bf16": torch.randn(4).to(torch.bfloat16),
        "i64": torch.arange(6).reshape(2, 3),
        "view": torch.randn(10, 10)[::2, 1],  # non-contiguous view of a larger storage
    }
    decoded = decode_tensors(encode_tensors(tensors))
    _assert_same(tensors, decoded)


def test_encoded_view_does_not_carry_its_whole_storage() -> None:
    big = torch.randn(1000, 1000)
    assert len(encode_tensors({"row": big[0]})) < 100_000


def test_flipped_payload_byte_is_corrupt() -> None:
    blob = bytearray(encode_tensors(_targets()))
    blob[-10] ^= 0xFF
    with pytest.raises(CorruptEntry, match="checksum"):
        decode_tensors(bytes(blob))


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([CACHE_FORMAT_VERSION + 1]) + b[5:], "version"),
        (lambda b: b[:20], "short"),
        (lambda b: b"", "short"),
    ],
)
def test_bad_header_is_corrupt(mangle, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CorruptEntry, match=match):
        decode_tensors(mangle(encode_tensors(_targets())))


@pytest.mark.parametrize(
    "obj",
    [torch.ones(3), [torch.ones(3)], {"a": 1}, {1: torch.ones(2)}, {"a": {"b": torch.ones(1)}}],
)
def test_valid_torch_save_of_wrong_shape_is_corrupt(obj: object) -> None:
    with pytest.raises(CorruptEntry):
        decode_tensors(_frame(_saved(obj)))


def test_pickled_object_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    payload = _saved({"relu1_1": _Evil(marker)})
    with pytest.raises(CorruptEntry, match="cannot load"):
        decode_tensors(_frame(payload))
    with pytest.raises(CorruptEntry):
        decode_tensors(_frame(_saved(_Evil(marker))))
    assert not marker.exists()
    # The check is meaningful: plain unpickling of the same bytes does run the payload.
    torch.load(io.BytesIO(payload), weights_only=False)
    assert marker.exists()


# -- two layers, across instances and processes -------------------------------------------


@pytest.mark.parametrize("big", [False, True], ids=["tiny", "over-32KiB"])
def test_put_is_found_in_memory_then_by_a_new_instance(tmp_path: Path, big: bool) -> None:
    key = make_key("gram", 1, {"style": "a"})
    value = _targets(1, big=big)
    with TargetCache(tmp_path / "c") as first:
        first.put(key, value)
        _assert_same(value, first.get(key))  # type: ignore[arg-type]
        assert first.stats.memory_hits == 1 and first.stats.writes == 1
    with TargetCache(tmp_path / "c") as second:
        assert key in second
        _assert_same(value, second.get(key))  # type: ignore[arg-type]
        assert second.stats.disk_hits == 1
        second.get(key)
        assert second.stats.memory_hits == 1 and second.stats.disk_hits == 1  # promoted
        assert second.warnings == []
    value_files = list((tmp_path / "c").rglob("*.val"))
    assert bool(value_files) == big  # large values live in files, small ones in SQLite


def test_miss_is_counted_and_returns_none(tmp_path: Path) -> None:
    with TargetCache(tmp_path / "c") as cache:
        assert cache.get("gram/v1/none") is None
        assert "gram/v1/none" not in cache
        assert cache.stats.misses == 1


def test_returned_dict_and_cached_copy_are_independent(tmp_path: Path) -> None:
    original = _targets(2)
    keep = {k: v.clone() for k, v in original.items()}
    with TargetCache(tmp_path / "c") as cache:
        cache.put("k", original)
        original["relu1_1"].add_(100)  # the caller edits its own tensor after put
        got = cache.get("k")
        assert got is not None
        got.pop("relu1_1")  # and mutates the returned dict
        _assert_same(keep, cache.get("k"))  # type: ignore[arg-type]


def test_non_string_keys_are_refused(tmp_path: Path) -> None:
    with TargetCache(tmp_path / "c") as cache:
        with pytest.raises(TypeError):
            cache.put(("gram", 1), _targets())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            cache.get(("gram", 1))  # type: ignore[arg-type]


def test_entry_written_by_another_process_is_read(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    key = make_key("gram", 1, {"style": "subprocess"})
    script = textwrap.dedent(
        f"""
        import torch
        from stylepipe.targets.cache import TargetCache
        g = torch.Generator().manual_seed(7)
        with TargetCache({str(directory)!r}) as cache:
            cache.put({key!r}, {{"relu3_1": torch.randn(64, 64, generator=g)}})
            assert not cache.warnings, cache.warnings
        """
    )
    python_path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = torch.randn(64, 64, generator=torch.Generator().manual_seed(7))
    with TargetCache(directory) as cache:
        got = cache.get(key)
        assert got is not None and torch.equal(got["relu3_1"], expected)
        assert cache.stats.disk_hits == 1


# -- corruption -------------------------------------------------------------------------


def test_corrupt_disk_entry_is_dropped_and_reported(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    key = make_key("gram", 1, {"style": "corrupt"})
    with TargetCache(directory) as cache:
        cache.put(key, _targets())
    with diskcache.Cache(str(directory)) as raw:
        assert raw.set(key, b"\x00garbage bytes that are not a cache value")
    with TargetCache(directory) as cache:
        assert cache.get(key) is None
        assert cache.stats.corrupt == 1 and cache.stats.misses == 1
        assert any(key in message for message in cache.warnings)
        assert key not in cache
        cache.put(key, _targets())  # the recomputed value replaces it
    with TargetCache(directory) as cache:
        assert cache.get(key) is not None and cache.stats.disk_hits == 1


def test_pickled_disk_value_is_refused_not_executed(tmp_path: Path) -> None:
    directory, marker = tmp_path / "c", tmp_path / "marker"
    with diskcache.Cache(str(directory)) as raw:
        raw.set("gram/v1/evil", _Evil(marker))  # diskcache pickles non-bytes values
    with TargetCache(directory) as cache:
        assert cache.get("gram/v1/evil") is None
        assert cache.stats.corrupt == 1
        assert "gram/v1/evil" not in cache
    assert not marker.exists()


def test_check_drops_corrupt_entries_and_keeps_good_ones(tmp_path: Path) -> None:
    directory, marker = tmp_path / "c", tmp_path / "marker"
    good = {f"gram/v1/good{i}": _targets(i, big=i == 0) for i in range(3)}
    with TargetCache(directory) as cache:
        for key, value in good.items():
            cache.put(key, value)
    with diskcache.Cache(str(directory)) as raw:
        raw.set("gram/v1/garbage", b"SPTC\x01" + b"\x00" * 40)
        raw.set("gram/v1/pickled", _Evil(marker))
        raw.set(("tuple", _Evil(marker)), b"x")  # a pickled key: listing must not unpickle it
    with TargetCache(directory) as cache:
        result = cache.check()
        assert result.checked == 6
        assert "gram/v1/garbage" in result.dropped and "gram/v1/pickled" in result.dropped
        assert len(result.dropped) == 3
        assert cache.info().entries == 3
        for key, value in good.items():
            _assert_same(value, cache.get(key))  # type: ignore[arg-type]
        assert cache.check().dropped == []
    assert not marker.exists()


# -- a cache that will not open ---------------------------------------------------------


def _assert_works(cache: TargetCache) -> None:
    value = _targets(3)
    cache.put("gram/v1/x", value)
    _assert_same(value, cache.get("gram/v1/x"))  # type: ignore[arg-type]


def test_garbage_database_is_moved_aside(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not an sqlite database\n" * 200)
    with TargetCache(directory) as cache:
        assert cache.info().disk_enabled
        _assert_works(cache)
        assert any("moved it aside" in message for message in cache.warnings)
    (broken,) = _broken_siblings(directory)
    assert (broken / "cache.db").read_bytes().startswith(b"this is not")
    with TargetCache(directory) as cache:  # the fresh cache persisted the entry
        assert cache.get("gram/v1/x") is not None and cache.warnings == []


def test_regular_file_in_the_way_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_text("not a directory")
    with TargetCache(path) as cache:
        assert cache.info().disk_enabled and path.is_dir()
        _assert_works(cache)
        assert any("moved it aside" in message for message in cache.warnings)
    (broken,) = _broken_siblings(path)
    assert broken.read_text() == "not a directory"


def test_cache_that_never_opens_falls_back_to_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(cache_module.diskcache, "Cache", refuse)
    directory = tmp_path / "c"
    directory.mkdir()
    with TargetCache(directory) as cache:
        info = cache.info()
        assert not info.disk_enabled and info.entries == 0
        _assert_works(cache)
        assert cache.info().entries == 1
        assert "gram/v1/x" in cache and cache.check().checked == 0
        assert len(cache.warnings) == 1 and "without a disk cache" in cache.warnings[-1]
    assert _broken_siblings(directory) == []  # an error that is not a damaged database moves nothing


def test_unwritable_cache_folder_is_left_alone_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "c"
    with TargetCache(directory) as cache:
        _assert_works(cache)
    import sqlite3

    def readonly(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(sqlite3, "connect", readonly)
    with TargetCache(directory) as cache:
        assert not cache.info().disk_enabled
        _assert_works(cache)
        assert "readonly database" in cache.warnings[0] and "without a disk cache" in cache.warnings[0]
    monkeypatch.undo()
    assert _broken_siblings(directory) == []
    with TargetCache(directory) as cache:  # still the same, intact cache
        assert cache.get("gram/v1/x") is not None


def test_busy_cache_is_not_moved_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(*args: object, **kwargs: object) -> None:
        raise diskcache.Timeout("database is locked")

    monkeypatch.setattr(cache_module.diskcache, "Cache", busy)
    directory = tmp_path / "c"
    directory.mkdir()
    with TargetCache(directory) as cache:
        assert not cache.info().disk_enabled
        _assert_works(cache)
        assert "busy" in cache.warnings[0]
    assert _broken_siblings(directory) == []


def test_memory_only_cache(tmp_path: Path) -> None:
    with TargetCache(None) as cache:
        _assert_works(cache)
        info = cache.info()
        assert info.directory is None and not info.disk_enabled and info.entries == 1
        assert info.size_bytes == 16 * 4 + 3 * 2
        assert cache.clear() == 0 and cache.get("gram/v1/x") is None
        assert cache.warnings == []


# -- write failures ---------------------------------------------------------------------


def test_failed_or_refused_disk_write_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def time_out(*args: object, **kwargs: object) -> bool:
        raise diskcache.Timeout()

    def refuse(*args: object, **kwargs: object) -> bool:
        return False

    with TargetCache(tmp_path / "c") as cache:
        monkeypatch.setattr(diskcache.Cache, "set", time_out)
        _assert_works(cache)  # still served from memory
        monkeypatch.setattr(diskcache.Cache, "set", refuse)
        cache.put("gram/v1/y", _targets())
        assert len(cache.warnings) == 2
        assert "gram/v1/x" in cache.warnings[0] and "refused" in cache.warnings[1]
        assert cache.stats.writes == 2
    monkeypatch.undo()
    with TargetCache(tmp_path / "c") as cache:
        assert "gram/v1/x" not in cache and "gram/v1/y" not in cache


def test_disk_read_error_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def io_error(*args: object, **kwargs: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    with TargetCache(tmp_path / "c") as cache:
        cache.put("gram/v1/x", _targets())
    with TargetCache(tmp_path / "c") as cache:
        monkeypatch.setattr(diskcache.Cache, "get", io_error)
        assert cache.get("gram/v1/x") is None
        assert cache.stats.misses == 1 and cache.stats.corrupt == 0
        assert "read of gram/v1/x failed" in cache.warnings[-1]
    monkeypatch.undo()
    with TargetCache(tmp_path / "c") as cache:  # the entry was not dropped
        assert cache.get("gram/v1/x") is not None


# -- info, clear, size limit --------------------------------------------------------------


def test_info_counts_and_clear_empties(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    with TargetCache(directory, size_limit_bytes=50 * 1024**2) as cache:
        empty = cache.info()
        assert empty.entries == 0 and empty.disk_enabled and empty.directory == directory
        cache.put("gram/v1/a", _targets(0, big=True))
        cache.put("gram/v1/b", _targets(1))
        info = cache.info()
        assert info.entries == 2
        assert info.size_bytes >= empty.size_bytes + 128 * 128 * 4
        assert info.size_limit_bytes == 50 * 1024**2
        assert cache.clear() == 2
        assert cache.info().entries == 0
        assert cache.get("gram/v1/a") is None  # memory layer cleared too
    with TargetCache(directory) as cache:
        assert cache.get("gram/v1/b") is None


def test_size_limit_and_policy_reach_diskcache(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    TargetCache(directory, size_limit_bytes=12_345_678).close()
    with diskcache.Cache(str(directory)) as raw:  # settings persist in the database
        assert raw.size_limit == 12_345_678
        assert raw.eviction_policy == "least-recently-used"
