"""The configuration store: versions, pointers, pruning, revert, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.io.configstore import ConfigStore, atomic_write

pytestmark = pytest.mark.timeout(10)


def test_empty_store_is_factory(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c")
    assert s.current() is None and s.good() is None
    assert (s.last_version, s.current_version, s.good_version) == (0, 0, 0)


def test_accept_confirm_revert_and_restart(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c")
    s.accept(1, "one", b"b1")
    s.confirm(1)
    s.accept(2, "two")
    assert s.current() is not None and s.current().text == "two"  # type: ignore[union-attr]
    reverted = s.revert()
    assert reverted is not None and reverted.version == 1 and reverted.text == "one"
    again = ConfigStore(tmp_path / "c")  # a restart
    assert again.current_version == 1 and again.last_version == 2
    with pytest.raises(ValueError):
        again.accept(2, "two again")  # replay refused even after the restart
    with pytest.raises(ValueError):
        again.accept(1, "rollback")


def test_revert_without_good_goes_back_to_factory(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c")
    s.accept(7, "seven")
    assert s.revert() is None and s.current() is None and s.last_version == 7


def test_counter_is_written_before_the_config(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c")
    s.record_version(3)  # a crash right after this: version 3 can never come again
    assert s.current() is None and s.last_version == 3
    with pytest.raises(ValueError):
        s.install(4, "never recorded")


def test_keeps_last_n_plus_good(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c", keep=2)
    s.accept(1, "1")
    s.confirm(1)
    for v in range(2, 7):
        s.accept(v, str(v))
    assert s.versions() == [1, 5, 6]
    assert not list((tmp_path / "c").glob(".*.tmp"))


def test_atomic_write_mode(tmp_path: Path) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"x")
    atomic_write(p, b"yy")
    assert p.read_bytes() == b"yy" and p.stat().st_mode & 0o777 == 0o600


def test_bundles_are_pruned_with_their_configs(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c", keep=3)
    for v in range(1, 41):
        s.accept(v, str(v), f"bundle {v}".encode())
        if v == 10:
            s.confirm(v)
    names = sorted(p.name for p in (tmp_path / "c").glob("v*"))
    assert names == [f"v{v:010d}.{x}" for v in (10, 38, 39, 40) for x in ("bundle", "toml")]


def test_recover_removes_what_a_crash_left_and_a_reader_does_not(tmp_path: Path) -> None:
    d = tmp_path / "c"
    s = ConfigStore(d, keep=3)
    s.accept(1, "one", b"b1")
    s.record_version(2)
    (d / "v0000000002.bundle").write_bytes(b"b2")  # killed before its .toml (old order)
    (d / ".current.abc123.tmp").write_bytes(b"half")  # killed inside atomic_write
    reader = ConfigStore(d)  # e.g. `twinguard config sign` reading the counter
    assert reader.last_version == 2
    assert (d / "v0000000002.bundle").exists() and (d / ".current.abc123.tmp").exists()
    assert reader.recover() == 0  # the writer, at start
    assert sorted(p.name for p in d.iterdir()) == [
        "counter", "current", "v0000000001.bundle", "v0000000001.toml"]


def test_journal_stage_commit_abandon(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path / "c")
    s.accept(1, "one", b"b1")
    s.record_version(2)
    s.stage(2, "two", b"b2")
    assert (s.current_version, s.staged_version) == (1, 2)  # staged is not in force
    assert ConfigStore(tmp_path / "c").recover() == 2  # a restart must settle it
    s.commit(2)
    assert (s.current_version, s.staged_version, s.bundle_of(2)) == (2, 0, b"b2")
    s.record_version(3)
    s.stage(3, "three", b"b3")
    s.abandon(3)
    assert (s.current_version, s.staged_version, s.last_version) == (2, 0, 3)
    assert s.bundle_of(3) is None and not s.path_of(3).exists()
    with pytest.raises(ValueError):
        s.commit(3)  # not staged any more
