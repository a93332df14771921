"""vecdb.importer's JSON rows decoded one row at a time (a whole-file ``json.loads`` held the GIL long
enough to lose the server's session) and ``$meta`` spread into a row as Milvus's JSON import does."""

from __future__ import annotations

import json
import threading
import time

import pytest

from vecdb import errors, importer
from vecdb.schema import CollectionSchema, DataType, FieldSchema


@pytest.mark.parametrize("text", ['[]', ' [ ]\n', '{"rows": []}', '[{"a": 1}, {"b": [1, {"c": null}]}]',
                                  '{"x": [1, {"rows": 2}], "rows": [{"a": 1}], "y": {"z": "]"}}',
                                  '\ufeff{"rows":[{"a":"[,]"}]}'])
def test_rows_decode_as_json_loads_does(text):
    doc = json.loads(text.lstrip("\ufeff"))
    assert importer.json_rows(text.encode(), "f.json") == (doc["rows"] if isinstance(doc, dict) else doc)


@pytest.mark.parametrize("text, words", [
    ("", "failed to parse"), ('[{"a": 1},]', "failed to parse"), ('[{"a": 1}] x', "Extra data"),
    ('{"rows": [{"a": 1}]', "failed to parse"), ('{"rows": [{"a": 1}] "x": 1}', "delimiter"),
    ("{}", "holds no rows"), ('{"rows": 5}', "holds no rows"), ("5", "holds no rows"),
    ("[1]", "row 0 is not an object"),
    (b"[\xff]", "failed to parse")])
def test_bad_documents_are_refused(text, words):
    with pytest.raises(errors.InvalidParameter, match=words):
        importer.json_rows(text if isinstance(text, bytes) else text.encode(), "f.json")


def test_other_threads_run_while_a_large_file_is_decoded():
    data = json.dumps({"rows": [{"id": i, "v": [0.5] * 64} for i in range(40_000)]}).encode()
    ticks: list[float] = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    t.start()
    start = time.monotonic()
    rows = importer.json_rows(data, "big.json")
    took = time.monotonic() - start
    done.set()
    t.join()
    assert len(rows) == 40_000 and rows[-1]["id"] == 39_999
    # a whole-file json.loads lets no other thread run until it returns; row by row, the ticker ticks
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if a >= start]
    assert len(gaps) > 10 and max(gaps) < max(0.5, took / 2), (took, max(gaps))


def _dynamic() -> CollectionSchema:
    return CollectionSchema(name="c", enable_dynamic_field=True, fields=[
        FieldSchema(name="id", dtype=DataType.INT64, is_primary=True, field_id=100),
        FieldSchema(name="$meta", dtype=DataType.JSON, is_dynamic=True, field_id=101)])


def test_meta_is_spread_into_the_row():
    rows = [{"id": 1, "$meta": {"k": 1}, "z": 2}, {"id": 2, "$meta": '{"k": 2}'}, {"id": 3, "z": 3},
            {"id": 4, "$meta": {}}]
    assert importer.merge_dynamic(_dynamic(), rows, "f.json") == [
        {"id": 1, "z": 2, "k": 1}, {"id": 2, "k": 2}, {"id": 3, "z": 3}, {"id": 4}]


@pytest.mark.parametrize("row, words", [
    ({"id": 1, "$meta": {"k": 1}, "k": 2}, "duplicated key is not allowed, key=k"),
    ({"id": 1, "$meta": "{bad"}, "not a JSON format string"),
    ({"id": 1, "$meta": [1]}, "not a JSON object"), ({"id": 1, "$meta": None}, "not a JSON object")])
def test_bad_meta_is_refused_naming_the_row(row, words):
    with pytest.raises(errors.InvalidParameter, match=f"f.json: row 1: .*{words}"):
        importer.merge_dynamic(_dynamic(), [{"id": 0}, row], "f.json")


def test_without_a_dynamic_field_meta_stays_for_the_insert_checks_to_refuse():
    schema = CollectionSchema(name="c", fields=[FieldSchema(name="id", dtype=DataType.INT64, is_primary=True)])
    rows = [{"id": 1, "$meta": {"k": 1}}]
    assert importer.merge_dynamic(schema, rows, "f.json") == [{"id": 1, "$meta": {"k": 1}}]
