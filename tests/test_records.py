"""Results on disk (svag.records): atomic writes, partial and malformed JSON Lines, NaN/inf as strings."""

import json
import math
import os

import pytest

from svag import records


def _leftovers(folder):
    """Temporary files of an atomic write (``.<name>.*.tmp``) still in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _strict_json(text):
    """``json.loads`` that refuses the non-standard tokens NaN / Infinity (what jq and browsers refuse)."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_are_written_as_strings(tmp_path):
    records.write_json(tmp_path / "x.json", {"a": 1.5, "b": math.nan, "c": [math.inf, 2, {"d": -math.inf}]})
    records.write_jsonl(tmp_path / "w.jsonl", [{"loss": math.nan}])
    records.append_jsonl(tmp_path / "w.jsonl", {"loss": math.inf})
    assert _strict_json((tmp_path / "x.json").read_text()) == {"a": 1.5, "b": "nan", "c": ["inf", 2, {"d": "-inf"}]}
    lines = (tmp_path / "w.jsonl").read_text().splitlines()
    assert [_strict_json(line) for line in lines] == [{"loss": "nan"}, {"loss": "inf"}]


def test_non_finite_floats_read_back_as_floats(tmp_path):
    records.write_json(tmp_path / "x.json", {"a": 1.5, "b": math.nan, "c": [math.inf, 2, {"d": -math.inf}]})
    back = records.read_json(tmp_path / "x.json")
    assert back["a"] == 1.5 and math.isnan(back["b"]) and back["c"] == [math.inf, 2, {"d": -math.inf}]
    records.append_jsonl(tmp_path / "m.jsonl", {"step": 1, "loss": math.nan, "G": math.inf})
    (row,) = records.read_jsonl(tmp_path / "m.jsonl")
    assert row["step"] == 1 and math.isnan(row["loss"]) and row["G"] == math.inf


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, error):
    p = tmp_path / "x.json"
    records.write_json(p, {"old": 1})

    def fail(fd):
        raise error

    monkeypatch.setattr(records.os, "fsync", fail)  # the new bytes are written, then the flush to disk fails
    with pytest.raises(type(error)):
        records.write_json(p, {"new": 2})
    monkeypatch.undo()
    assert records.read_json(p) == {"old": 1}
    assert _leftovers(tmp_path) == []


def test_unserializable_value_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        records.write_json(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_write_jsonl_replaces_the_file(tmp_path):
    p = tmp_path / "m.jsonl"
    records.write_jsonl(p, [{"a": i} for i in range(3)])
    records.write_jsonl(p, [{"a": 9}])
    assert records.read_jsonl(p) == [{"a": 9}]
    assert _leftovers(tmp_path) == []


def test_partial_last_line_is_dropped_unless_refused(tmp_path):
    p = tmp_path / "m.jsonl"
    records.append_jsonl(p, {"step": 1})
    records.append_jsonl(p, {"step": 2})
    with open(p, "a") as fh:
        fh.write('{"step": 3, "los')  # a run killed mid-write
    assert [r["step"] for r in records.read_jsonl(p)] == [1, 2]
    with pytest.raises(ValueError, match=r"m\.jsonl: line 3 is not valid JSON"):
        records.read_jsonl(p, allow_partial_last=False)


def test_malformed_middle_line_names_the_file_and_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"a": 1}\n\n{broken\n{"a": 2}\n')
    with pytest.raises(ValueError, match=rf"^{tmp_path}{os.sep}m\.jsonl: line 3 is not valid JSON$"):
        records.read_jsonl(p)


def test_csv_writes_non_finite_as_strings(tmp_path):
    p = tmp_path / "t.csv"
    records.write_csv(p, [{"l": 1, "x": 0.5}, {"l": 2, "x": math.nan}, {"l": 4, "x": -math.inf}])
    assert p.read_text().splitlines() == ["l,x", "1,0.5", "2,nan", "4,-inf"]


def test_missing_and_corrupt_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        records.read_json(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="no such file"):
        records.read_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "bad.json").write_text('{"a": 1,\n')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON \(.* at line 2\)"):
        records.read_json(tmp_path / "bad.json")


# -- temporary files, modes, folders that cannot be written ---------------------------------------


def test_temporary_names_and_their_removal(tmp_path):
    names = [".config.json.abc.tmp", ".checkpoint.pt.x_9Zq2k1.tmp", ".a.b.c.tmp"]
    others = ["config.json", ".tmp", "..tmp", ".config.tmp", "x.abc.tmp", ".config.json.a-b.tmp", ".hidden"]
    assert [records.is_temporary(n) for n in names] == [True] * 3
    assert [records.is_temporary(n) for n in others] == [False] * len(others)
    assert records.temporary_of(".checkpoint.pt.x_9Zq2k1.tmp") == "checkpoint.pt"
    for name in names + others:
        (tmp_path / name).write_text("")
    assert [p.name for p in records.remove_temporaries(tmp_path)] == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)
    assert records.remove_temporaries(tmp_path / "absent") == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_of_the_umask(tmp_path, umask):
    """mkstemp creates 0600; a result file gets 0666 less the umask, as from any other tool."""
    old = os.umask(umask)
    try:
        assert records.file_mode() == 0o666 & ~umask
        records.write_json(tmp_path / "a.json", {"x": 1})
        records.write_text(tmp_path / "b.md", "x")
        records.append_jsonl(tmp_path / "c.jsonl", {"x": 1})
        records.write_jsonl(tmp_path / "c.jsonl", [{"x": 2}])  # replaced: keeps the umask's mode
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        n: oct(0o666 & ~umask) for n in ("a.json", "b.md", "c.jsonl")
    }


def test_writes_blocked_by_a_file_or_a_permission_name_the_path(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match=rf"^cannot write {tmp_path}/f/sub/x.json: {tmp_path}/f is a file"):
        records.write_json(tmp_path / "f" / "sub" / "x.json", {})
    with pytest.raises(IsADirectoryError, match=rf"^cannot write {tmp_path}: it is a folder$"):
        records.write_text(tmp_path, "x")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(records.tempfile, "mkstemp", denied)  # what a folder of another user does (tests run as root)
    monkeypatch.setattr(records.os, "access", lambda *a, **k: False)
    with pytest.raises(records.NotWritableError, match=rf"^cannot write {tmp_path}/x.json: {tmp_path} is not writable"):
        records.write_json(tmp_path / "x.json", {})
    with pytest.raises(ValueError, match="permission denied"):  # the CLI prints a ValueError as one line
        records.check_writable(tmp_path / "new", "cannot make it")
    assert _leftovers(tmp_path) == []
