"""The MinHash function (Milvus 3.0) through pymilvus on every deployment: raw text inserted into a VARCHAR
field, its MinHash signature filled into a BINARY_VECTOR field by the server (32-bit values, dim 32 *
num_hashes), indexed MINHASH_LSH / MHJACCARD (mh_element_bit_width 32) over sealed and growing rows, and
searched with raw text: near-duplicates first, scored with the share of equal values of the signatures;
upserts refill the signature; describe_collection gives the function back; the refusals."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from tests.e2e._helpers import raw_stub
from vecdb.analyzer import parse_params
from vecdb.minhash_function import MinHashSpec, signatures

HASHES = 64
SEALED, GROWING = 300, 30
SPEC = MinHashSpec(num_hashes=HASHES, shingle_size=3)
INDEX = {"mh_element_bit_width": 32, "mh_lsh_band": 16, "with_raw_data": True}
JACCARD = {"metric_type": "MHJACCARD", "params": {"mh_search_with_jaccard": True}}
STANDARD = parse_params("")


def _texts(n: int, rng) -> list[str]:
    vocab = [f"word{i}" for i in range(3000)]
    return [" ".join(rng.choice(vocab, 40)) for _ in range(n)]


def _near_duplicate(text: str, rng) -> str:
    """``text`` with 2 of its 40 words changed, one capitalized and punctuation added (the analyzer's)."""
    words = text.split()
    for i in rng.choice(len(words), 2, replace=False):
        words[i] = "changed" + words[i]
    words[0] = words[0].upper()
    return ", ".join(words) + "!"


def _schema(dim: int = 32 * HASHES, params=None):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=4000, enable_analyzer=True)
    schema.add_field("sig", DataType.BINARY_VECTOR, dim=dim)
    schema.add_field("tag", DataType.INT64)
    schema.add_function(Function("mh", FunctionType.MINHASH, input_field_names=["text"], output_field_names=["sig"],
                                 params={"num_hashes": HASHES, "shingle_size": 3} if params is None else params))
    return schema


@pytest.fixture
def texts(client, name):
    """Collection ``name`` with SEALED flushed rows and GROWING growing ones, indexed and loaded."""
    rng = np.random.default_rng(21)
    texts = _texts(SEALED + GROWING, rng)
    idx = client.prepare_index_params()
    idx.add_index("sig", index_type="MINHASH_LSH", metric_type="MHJACCARD", params=INDEX)
    client.create_collection(name, schema=_schema(), index_params=idx)
    rows = [{"id": i, "text": t, "tag": i % 3} for i, t in enumerate(texts)]
    client.insert(name, rows[:SEALED])
    client.flush(name)
    client.insert(name, rows[SEALED:])
    deadline = time.time() + 60
    while time.time() < deadline:
        info = client.describe_index(name, "sig")
        if info["pending_index_rows"] == 0 and info["state"] == "Finished":
            break
        time.sleep(0.1)
    return texts


def _share(a: str, b: str) -> float:
    x, y = signatures([a, b], SPEC, STANDARD)
    return float(np.mean(x == y))


def test_near_duplicate_texts_rank_first_with_their_estimated_jaccard(client, name, texts):
    rng = np.random.default_rng(4)
    sources = [5, 170, SEALED + 3]  # sealed and growing rows
    queries = [_near_duplicate(texts[s], rng) for s in sources]
    res = client.search(name, queries, anns_field="sig", limit=3, search_params=JACCARD, output_fields=["tag"])
    for q, src in enumerate(sources):
        hits = res[q]
        assert hits[0]["id"] == src and hits[0]["entity"]["tag"] == src % 3
        # 2 changed words of 40 leave 32 of 42 3-word shingles: Jaccard 32 / 44 (about 0.73)
        assert hits[0]["distance"] == pytest.approx(_share(texts[src], queries[q]), abs=1e-6)
        assert 0.5 < hits[0]["distance"] < 0.95
        assert all(h["distance"] < 0.3 for h in hits[1:])  # unrelated texts share (almost) nothing
    exact = client.search(name, [texts[42]], anns_field="sig", limit=1, search_params=JACCARD)
    assert exact[0][0]["id"] == 42 and exact[0][0]["distance"] == pytest.approx(1.0)
    lsh = client.search(name, [texts[5]], anns_field="sig", limit=1, search_params={"metric_type": "MHJACCARD"},
                        filter="tag == 2")  # LSH hits only (knowhere's score 1.0), the filter keeps row 5
    assert [(h["id"], h["distance"]) for h in lsh[0]] == [(5, pytest.approx(1.0))]


def test_stored_signature_upsert_and_describe(client, name, texts):
    got = client.query(name, filter="id in [7, 310]", output_fields=["sig"])
    want = signatures([texts[7], texts[310]], SPEC, STANDARD)
    for row in sorted(got, key=lambda r: r["id"]):
        sig = row["sig"][0] if isinstance(row["sig"], list) else row["sig"]
        assert np.array_equal(np.frombuffer(bytes(sig), "<u4"), want[0 if row["id"] == 7 else 1])
    client.upsert(name, [{"id": 7, "text": texts[9], "tag": 1}])  # row 7 now holds row 9's text
    res = client.search(name, [texts[9]], anns_field="sig", limit=2, search_params=JACCARD)
    assert sorted(h["id"] for h in res[0]) == [7, 9] and all(h["distance"] == pytest.approx(1.0) for h in res[0])
    desc = client.describe_collection(name)
    (fn,) = desc["functions"]
    assert fn["name"] == "mh" and fn["type"] == FunctionType.MINHASH
    assert fn["input_field_names"] == ["text"] and fn["output_field_names"] == ["sig"]
    assert fn["params"] == {"num_hashes": "64", "shingle_size": "3"}
    assert next(f for f in desc["fields"] if f["name"] == "sig").get("is_function_output")


def test_refusals(client, uri, name, texts):
    # the output field is the server's to fill (pymilvus refuses it itself: a raw request)
    fields = [schema_pb2.FieldData(field_name="id", type=schema_pb2.Int64),
              schema_pb2.FieldData(field_name="text", type=schema_pb2.VarChar),
              schema_pb2.FieldData(field_name="tag", type=schema_pb2.Int64),
              schema_pb2.FieldData(field_name="sig", type=schema_pb2.BinaryVector)]
    fields[0].scalars.long_data.data.append(1000)
    fields[1].scalars.string_data.data.append("x")
    fields[2].scalars.long_data.data.append(0)
    fields[3].vectors.dim, fields[3].vectors.binary_vector = 32 * HASHES, bytes(4 * HASHES)
    with raw_stub(uri) as stub:
        reply = stub.Insert(milvus_pb2.InsertRequest(collection_name=name, fields_data=fields, num_rows=1))
    assert reply.status.code == 1100
    assert "not support manually specifying the function output field sig" in reply.status.reason
    with pytest.raises(MilvusException, match="metric type not match"):
        client.search(name, ["some text"], anns_field="sig", limit=1, search_params={"metric_type": "HAMMING"})
    with pytest.raises(MilvusException, match=r"dim 1024 does not match expected dim 2048") as e:
        client.create_collection(name + "_bad", schema=_schema(dim=1024))
    assert e.value.code == 1100
    with pytest.raises(MilvusException, match="unknown token_level: line") as e:
        client.create_collection(name + "_bad", schema=_schema(params={"token_level": "line"}))
    assert e.value.code == 1100


def test_char_level_without_analyzer(client, name):
    """token_level char: byte shingles of the raw text, the input field needing no analyzer."""
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=200)
    schema.add_field("sig", DataType.BINARY_VECTOR, dim=32 * 32)
    schema.add_function(Function("mh", FunctionType.MINHASH, input_field_names=["text"], output_field_names=["sig"],
                                 params={"token_level": "char", "shingle_size": 4}))  # num_hashes from the dim
    idx = client.prepare_index_params()
    idx.add_index("sig", index_type="BIN_FLAT", metric_type="MHJACCARD")
    client.create_collection(name, schema=schema, index_params=idx)
    words = ["vector database systems", "approximate nearest neighbour", "completely different words"]
    client.insert(name, [{"id": i, "text": t} for i, t in enumerate(words)])
    res = client.search(name, ["vector database system"], anns_field="sig", limit=3,
                        search_params={"metric_type": "MHJACCARD",
                                       "params": {"mh_search_with_jaccard": True, "mh_element_bit_width": 32}})
    assert res[0][0]["id"] == 0 and res[0][0]["distance"] > 0.6
