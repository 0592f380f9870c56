import json
import math

import pytest

from svag import records


def test_json_round_trip_and_nan_as_string(tmp_path):
    p = tmp_path / "a" / "x.json"
    records.write_json(p, {"a": 1.5, "b": math.nan, "c": [math.inf, 2]})
    assert records.read_json(p) == {"a": 1.5, "b": "nan", "c": ["inf", 2]}
    assert not list(p.parent.glob(".*tmp"))  # no temporary file left behind


def test_jsonl_append_and_partial_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    records.append_jsonl(p, {"step": 1})
    records.append_jsonl(p, {"step": 2})
    with open(p, "a") as fh:
        fh.write('{"step": 3, "los')  # a run killed mid-write
    assert [r["step"] for r in records.read_jsonl(p)] == [1, 2]
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        p.write_text('{"a": 1}\n{broken\n{"a": 2}\n')
        records.read_jsonl(p)


def test_write_jsonl_replaces_atomically(tmp_path):
    p = tmp_path / "m.jsonl"
    records.write_jsonl(p, [{"a": i} for i in range(3)])
    records.write_jsonl(p, [{"a": 9}])
    assert records.read_jsonl(p) == [{"a": 9}]


def test_csv(tmp_path):
    p = tmp_path / "t.csv"
    records.write_csv(p, [{"l": 1, "x": 0.5}, {"l": 2, "x": math.nan}])
    assert p.read_text().splitlines() == ["l,x", "1,0.5", "2,nan"]


def test_missing_and_corrupt_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        records.read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad.json is not valid JSON"):
        records.read_json(tmp_path / "bad.json")
    assert json.loads('"ok"') == "ok"
