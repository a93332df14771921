"""Seeded data for the filter end-to-end tests, and its plain-Python truth after the writes.

The schema is a superset of ``tests/unit/expr_reference.make_schema`` (same field names, so the
unit test's hypothesis strategies apply), plus INT16 ``i16``, an INT64 ``big`` holding the int64
bounds, a 4-d vector and an INT64 primary key ``pk``.

Value domains are chosen so that the reference (Python ints never overflow, Python floats) and a
server computing in int64 / float64 agree:

- ``big`` holds +-2**63 bounds: only compared, never used in arithmetic by the tests;
- ``a`` stays within +-10**9 and ``i32`` within the INT32 bounds, so a product of two of them fits
  int64 (the property test rejects the rare expression whose arithmetic would overflow);
- FLOAT values are float32-exact, and the reference row holds the float32 value the server stores;
- JSON integers stay within +-2**53 (vecdb compares JSON numbers as float64, see vecdb/expr/rowdata.py).

Reference rows (``reference_row``) use expr_reference's layout: typed fields by name, ``"$meta"``
for the dynamic keys, arrays as lists.
"""

from __future__ import annotations

import json
import random

import numpy as np
from pymilvus import DataType, MilvusClient

DIM = 4
N_ROWS = 2000
SEED = 20240611
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TYPED = ("a", "big", "small", "i16", "i32", "b", "f32", "flag", "name", "meta", "tags", "strs", "fl")

# strings: the unit strategies' alphabet, unicode, LIKE wildcards as data, quotes and backslashes
WORDS = ["", "a", "b", "ab", "ba", "aa", "a_b", "a%b", "100%", "50%_off", "%", "_", "__", "\\", "a\\b",
         "apple", "Apple", "APPLE", "banana", "日本語", "日本", "語", "Äpfel", "ümlaut", "naïve", "😀 smile",
         "it's", 'say "hi"', "tab\tin", "x" * 40, " a", "a "]
ARR_WORDS = ["", "a", "b", "ab", "a_b", "%", "日本", "Äp", "x%y", "\\"]


def quarter(rng: random.Random) -> float:
    return rng.randint(-24, 24) / 4


def short_text(rng: random.Random) -> str:
    """The unit strategies' alphabet, up to 4 characters."""
    return "".join(rng.choice("ab_%\\") for _ in range(rng.randint(0, 4)))


def text(rng: random.Random) -> str:
    return short_text(rng) if rng.random() < 0.5 else rng.choice(WORDS)


def json_scalar(rng: random.Random):
    k = rng.random()
    if k < 0.35:
        return rng.randint(-6, 6)
    if k < 0.5:
        return quarter(rng)
    if k < 0.72:
        return text(rng)
    if k < 0.87:
        return rng.random() < 0.5
    if k < 0.95:
        return None
    return rng.choice([2**53, -(2**53), 10**12, -0.0, 1e15, 127, -128])


def json_value(rng: random.Random, depth: int = 0):
    if depth < 2 and rng.random() < 0.25:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return json_scalar(rng)


def _pick(rng: random.Random, common: float, small, wide, edges):
    k = rng.random()
    if k < common:
        return small()
    if k < 0.97:
        return wide()
    return rng.choice(edges)


def make_meta(rng: random.Random):
    """A JSON document: usually an object with optional keys; sometimes a list, a number or a string."""
    k = rng.random()
    if k < 0.03:
        return [json_scalar(rng) for _ in range(rng.randint(0, 3))]
    if k < 0.05:
        # pymilvus parses a str given for a JSON field as JSON text: send scalars serialised
        return json.dumps(json_scalar(rng) if rng.random() < 0.5 else text(rng))
    meta = {}
    opt = lambda p: rng.random() < p  # noqa: E731
    if opt(0.85):
        meta["x"] = json_value(rng)
    if opt(0.8):
        meta["s"] = text(rng) if rng.random() < 0.75 else rng.randint(-6, 6)
    if opt(0.7):
        meta["b"] = rng.random() < 0.5 if rng.random() < 0.8 else rng.randint(-1, 1)
    if opt(0.75):
        meta["arr"] = [json_scalar(rng) for _ in range(rng.randint(0, 4))]
    if opt(0.7):
        meta["n"] = {"y": json_scalar(rng)} if rng.random() < 0.8 else {}
    if opt(0.4):
        meta["deep"] = {"l1": {"l2": [{"v": rng.randint(-3, 3)} for _ in range(rng.randint(0, 2))],
                               "w": rng.choice(WORDS)}}
    if opt(0.1):
        meta["null"] = None
    return meta


def make_dynamic(rng: random.Random) -> dict:
    dyn = {}
    if rng.random() < 0.7:
        dyn["d"] = json_scalar(rng)
    if rng.random() < 0.6:
        dyn["e"] = [rng.randint(-6, 6) if rng.random() < 0.5 else text(rng) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.5:
        dyn["dn"] = {"k": rng.randint(-6, 6), "w": rng.choice(WORDS)} if rng.random() < 0.8 else {"k": None}
    if rng.random() < 0.5:
        dyn["color"] = rng.choice(["red", "green", "blue", "Red", "rouge", "红", ""])
    return dyn


def make_row(rng: random.Random, pk: int, vec) -> dict:
    """One row in pymilvus insert form (dynamic keys at the top level)."""
    row = {
        "pk": pk,
        "a": _pick(rng, 0.7, lambda: rng.randint(-6, 6), lambda: rng.randint(-1000, 1000),
                   [10**9, -(10**9), 2**31, -(2**31) - 1]),
        "big": _pick(rng, 0.6, lambda: rng.randint(-6, 6), lambda: rng.randint(-(2**62), 2**62),
                     [INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1, 2**53 + 1]),
        "small": _pick(rng, 0.5, lambda: rng.randint(-6, 6), lambda: rng.randint(-128, 127), [-128, 127]),
        "i16": _pick(rng, 0.5, lambda: rng.randint(-6, 6), lambda: rng.randint(-32768, 32767), [-32768, 32767]),
        "i32": _pick(rng, 0.7, lambda: rng.randint(-6, 6), lambda: rng.randint(-50000, 50000),
                     [-(2**31), 2**31 - 1]),
        "b": _pick(rng, 0.7, lambda: quarter(rng), lambda: round(rng.uniform(-1e6, 1e6), 3),
                   [0.1, -0.0, 1e15, -1e15, 1e-6, 2.5]),
        "f32": float(np.float32(_pick(rng, 0.75, lambda: quarter(rng), lambda: rng.uniform(-1e4, 1e4),
                                      [1e10, -1e10, 0.5, -0.0]))),
        "flag": rng.random() < 0.5,
        "name": text(rng),
        "meta": make_meta(rng),
        "tags": [rng.randint(-6, 6) for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8]))],
        "strs": [rng.choice(ARR_WORDS) if rng.random() < 0.5 else short_text(rng) for _ in range(rng.randint(0, 3))],
        "fl": [quarter(rng) for _ in range(rng.randint(0, 3))],
        "vec": [float(x) for x in vec],
    }
    row.update(make_dynamic(rng))
    return row


def make_rows(n: int, seed: int, first_pk: int = 0) -> list[dict]:
    rng = random.Random(seed)
    vecs = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return [make_row(rng, first_pk + i, vecs[i]) for i in range(n)]


def reference_row(row: dict) -> dict:
    """Insert form -> expr_reference form (typed fields, ``$meta`` dict, float32-rounded FLOAT values,
    ``vec`` as float32 numpy for the search checks)."""
    ref = {k: row[k] for k in ("pk", *TYPED)}
    if isinstance(row["meta"], str):
        ref["meta"] = json.loads(row["meta"])
    ref["f32"] = float(np.float32(row["f32"]))
    ref["fl"] = [float(np.float32(x)) for x in row["fl"]]
    ref["$meta"] = {k: v for k, v in row.items() if k not in ref and k != "vec"}
    ref["vec"] = np.asarray(row["vec"], np.float32)
    return ref


def schema():
    s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    s.add_field("pk", DataType.INT64, is_primary=True)
    s.add_field("a", DataType.INT64)
    s.add_field("big", DataType.INT64)
    s.add_field("small", DataType.INT8)
    s.add_field("i16", DataType.INT16)
    s.add_field("i32", DataType.INT32)
    s.add_field("b", DataType.DOUBLE)
    s.add_field("f32", DataType.FLOAT)
    s.add_field("flag", DataType.BOOL)
    s.add_field("name", DataType.VARCHAR, max_length=64)
    s.add_field("meta", DataType.JSON)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    s.add_field("strs", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=16)
    s.add_field("fl", DataType.ARRAY, element_type=DataType.FLOAT, max_capacity=8)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    return s


# Writes after the two insert rounds: deletes and upserts in both the sealed and the growing part.
DELETE_IDS = [3, 5, 8, 250, 251, 252, 999, 1300, 1301, 1555, 1999]
DELETE_FILTER = "pk % 97 == 13"  # ~20 rows spread over both parts
UPSERT_IDS = [*range(10, 20), 251, *range(1600, 1610), *range(2000, 2010)]  # 251 was deleted, 2000+ are new


def delete_filter_matches(pk: int) -> bool:
    return pk % 97 == 13


def populate(client: MilvusClient, name: str) -> dict[int, dict]:
    """Create, index (FLAT), load and fill ``name``; return the reference rows by pk after all writes.

    Rows 0..1199 are inserted in three batches and flushed (sealed); 1200..1999 stay growing.
    Then deletes by id and by filter, and upserts (rows replaced, a deleted id re-inserted, new ids).
    """
    idx = client.prepare_index_params()
    idx.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema(), index_params=idx)
    client.load_collection(name)
    rows = make_rows(N_ROWS, SEED)
    for lo in range(0, 1200, 400):
        client.insert(name, rows[lo:lo + 400])
    client.flush(name)
    client.insert(name, rows[1200:1600])
    client.insert(name, rows[1600:])
    truth = {r["pk"]: r for r in rows}

    client.delete(name, ids=DELETE_IDS)
    for pk in DELETE_IDS:
        truth.pop(pk, None)
    client.delete(name, filter=DELETE_FILTER)
    for pk in [pk for pk in truth if delete_filter_matches(pk)]:
        del truth[pk]

    fresh = make_rows(len(UPSERT_IDS), SEED + 1)
    for row, pk in zip(fresh, UPSERT_IDS, strict=True):
        row["pk"] = pk
    client.upsert(name, fresh[:15])
    client.upsert(name, fresh[15:])
    truth.update({r["pk"]: r for r in fresh})
    return {pk: reference_row(r) for pk, r in truth.items()}

