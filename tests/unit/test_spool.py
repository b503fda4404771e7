from __future__ import annotations

from pathlib import Path

from streams.spool import Spool


def test_records_survive_a_new_process_and_are_claimed_once(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append([("t", "k1", b'{"a": 1}'), ("t", "k2", b"\x00\xffbinary")])
    first.close()
    second = Spool(tmp_path)  # as if the first process had died
    assert second.pending == 2
    (path,) = second.files()
    with second.claim(path) as records, second.claim(path) as again:
        assert records == [("t", "k1", b'{"a": 1}'), ("t", "k2", b"\x00\xffbinary")]
        assert again is None  # another replayer holds it
    second.done(path, 2)
    assert second.files() == [] and second.pending == 0


def test_rotation_starts_a_new_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([("t", "k", b"1")])
    spool.rotate()
    spool.append([("t", "k", b"2")])
    assert len(spool.files()) == 2
