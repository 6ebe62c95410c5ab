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
