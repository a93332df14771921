"""HNSW_SQ, HNSW_PQ, HNSW_PRQ, IVF_RABITQ and DISKANN through pymilvus's MilvusClient on a standalone server:
create_index, a build on the sealed segment, load, search with each type's search parameters, describe_index,
and Milvus's errors for bad parameters (vecdb.index.faiss_quantized)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from tests.conftest import start_standalone, wait_until

DIM, N = 16, 1500  # a segment of 1,024 rows or more gets its index (vecdb.storage.segments)
STATS = ("field_name", "index_name", "total_rows", "indexed_rows", "pending_index_rows", "state")
TYPES = [  # (index type, build params, search params)
    ("HNSW_SQ", {"M": 16, "efConstruction": 64, "sq_type": "FP16", "refine": True, "refine_type": "FP32"},
     {"ef": 32, "refine_k": 2}),
    ("HNSW_PQ", {"M": 16, "efConstruction": 64, "m": 4, "nbits": 6, "refine": True, "refine_type": "SQ8"},
     {"ef": 32, "refine_k": 4}),
    ("HNSW_PRQ", {"M": 16, "efConstruction": 64, "m": 2, "nrq": 2, "nbits": 4, "refine": True, "refine_type": "FP16"},
     {"ef": 32, "refine_k": 8}),
    ("IVF_RABITQ", {"nlist": 8, "refine": True, "refine_type": "FP32"},
     {"nprobe": 8, "rbq_query_bits": 0, "refine_k": 8}),
    ("DISKANN", {}, {"search_list": 20}),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("types26")


@pytest.fixture(scope="module")
def client(data_dir):
    node = start_standalone(str(data_dir))
    c = MilvusClient(uri=f"http://127.0.0.1:{node.port}")
    yield c
    c.close()
    node.stop()


@pytest.fixture(scope="module")
def vectors():
    return np.random.default_rng(11).standard_normal((N, DIM)).astype(np.float32)


def _collection(client: MilvusClient, name: str, vectors: np.ndarray) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(name, schema=schema)
    client.insert(name, [{"id": i, "vector": v} for i, v in enumerate(vectors.tolist())])
    client.flush(name)


@pytest.mark.parametrize("itype,build,search", TYPES, ids=[t[0] for t in TYPES])
def test_create_load_search_describe(client, data_dir, vectors, itype, build, search):
    name = f"t26_{itype.lower()}"
    _collection(client, name, vectors)
    idx = client.prepare_index_params()
    idx.add_index(field_name="vector", index_type=itype, index_name="vec_idx", metric_type="L2", params=build)
    client.create_index(name, idx)
    wait_until(lambda: client.describe_index(name, "vec_idx")["indexed_rows"] == N, 60, f"{itype} not built")
    desc = client.describe_index(name, "vec_idx")
    assert desc["index_type"] == itype and desc["metric_type"] == "L2" and desc["state"] == "Finished"
    user = {k: v for k, v in desc.items() if k not in STATS and k not in ("index_type", "metric_type")}
    # the validated parameters, defaults included (vecdb.proxy.rpc_index): what was given, as given
    assert {k: str(user[k]).lower() for k in build} == {k: str(v).lower() for k, v in build.items()}
    if itype == "DISKANN":
        assert (user["max_degree"], user["search_list_size"]) == ("48", "128")
    assert client.list_indexes(name) == ["vec_idx"]
    client.load_collection(name)
    if itype == "DISKANN":  # the standalone server (in this process) serves it from its file, mapped
        with open("/proc/self/maps") as f:
            assert str(os.path.realpath(data_dir)) in f.read()
    queries = vectors[[5, 77, 300]]
    res = client.search(name, queries.tolist(), limit=5, search_params={"params": search},
                        consistency_level="Strong")
    exact = np.argsort(((vectors[None] - queries[:, None]) ** 2).sum(-1), axis=1)[:, :5]
    for hits, want in zip(res, exact):
        assert len(hits) == 5 and hits[0]["id"] == int(want[0])  # the query row itself, at distance 0
        assert len({h["id"] for h in hits} & set(want.tolist())) >= 3
        assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    client.drop_collection(name)


def test_bad_params_are_refused_with_milvus_errors(client, vectors):
    name = "t26_bad"
    _collection(client, name, vectors)
    for itype, params, match in [
        ("HNSW_SQ", {"sq_type": "SQ5"}, "invalid scalar quantizer type"),
        ("HNSW_PQ", {"m": 5}, "should be a multiple of the number of subquantizers"),
        ("IVF_RABITQ", {"refine": True, "refine_type": "PQ"}, "invalid refine type : PQ"),
    ]:
        idx = client.prepare_index_params()
        idx.add_index(field_name="vector", index_type=itype, metric_type="L2", params=params)
        with pytest.raises(MilvusException, match=match) as e:
            client.create_index(name, idx)
        assert e.value.code == 1100
    idx = client.prepare_index_params()
    idx.add_index(field_name="vector", index_type="DISKANN", metric_type="L2")
    client.create_index(name, idx)
    wait_until(lambda: client.describe_index(name, "vector")["indexed_rows"] == N, 60, "DISKANN not built")
    client.load_collection(name)
    with pytest.raises(MilvusException, match=r"search_list_size\(5\) should be larger than k\(10\)") as e:
        client.search(name, [vectors[0].tolist()], limit=10, search_params={"params": {"search_list": 5}})
    assert e.value.code == 1100
    client.drop_collection(name)
