"""Rate limits and write protection (vecdb.proxy.quota) on a clock the test moves."""

from __future__ import annotations

import pytest
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb import errors
from vecdb.config import QuotaSettings, load_settings
from vecdb.proxy.quota import MB, Quota, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Context:
    """What Quota reads of a gRPC call: its metadata (user and database)."""

    def __init__(self, user: str = "", db: str = "") -> None:
        import base64

        self.md = []
        if user:
            self.md.append(("authorization", base64.b64encode(f"{user}:pw".encode()).decode()))
        if db:
            self.md.append(("dbname", db))

    def invocation_metadata(self):
        return self.md


def search(collection: str = "c", nq: int = 1):
    return milvus_pb2.SearchRequest(collection_name=collection, nq=nq)


def admitted(quota: Quota, method: str, request, context=None, tries: int = 1000) -> int:
    n = 0
    for _ in range(tries):
        try:
            quota.admit(method, request, context)
        except errors.RateLimited:
            continue
        n += 1
    return n


def test_bucket_holds_a_second_and_lets_one_large_call_through_into_debt():
    clock = Clock()
    b = TokenBucket(10.0, clock)
    assert sum(b.take(1) for _ in range(100)) == 10  # a second's worth, then refused
    clock.now += 0.5
    assert sum(b.take(1) for _ in range(100)) == 5
    clock.now += 10
    assert b.take(35)  # larger than the bucket: passes, leaves a debt of 25
    clock.now += 2
    assert not b.take(1)  # 5 paid back of 25
    clock.now += 0.6
    assert b.take(1)


def test_search_rate_counts_vectors_and_refusals_cost_nothing():
    clock = Clock()
    q = Quota(QuotaSettings(search_rate=100), clock=clock, memory_used=lambda: 0)
    assert admitted(q, "Search", search(nq=10)) == 10
    clock.now += 1
    assert admitted(q, "Search", search(nq=50)) == 2
    clock.now += 1
    hybrid = milvus_pb2.HybridSearchRequest(collection_name="c", requests=[search(nq=30), search(nq=20)])
    assert admitted(q, "HybridSearch", hybrid) == 2  # 50 vectors each
    with pytest.raises(errors.RateLimited, match=r"rate limit exceeded\[rate=100 vectors/s, Search\]") as e:
        q.admit("Search", search())
    assert e.value.code == 8 and e.value.legacy_code == "RateLimit" and e.value.retriable


def test_a_search_without_nq_counts_its_query_vectors():
    """Older clients send nq 0: the placeholder group's vectors are counted, so a batch costs what it
    searches (it cost one token)."""
    from pymilvus.grpc_gen import common_pb2

    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.PlaceholderType.FloatVector, values=[b"\0" * 8] * 25)])
    clock = Clock()
    q = Quota(QuotaSettings(search_rate=100), clock=clock, memory_used=lambda: 0)
    batch = milvus_pb2.SearchRequest(collection_name="c", nq=0, placeholder_group=group.SerializeToString())
    assert admitted(q, "Search", batch) == 4
    clock.now += 1
    garbled = milvus_pb2.SearchRequest(collection_name="c", nq=0, placeholder_group=b"\xff\xff")
    assert admitted(q, "Search", garbled) == 100  # (refused by the search itself: one token here)


def test_per_collection_and_per_user_limits_are_separate_buckets():
    clock = Clock()
    q = Quota(QuotaSettings(query_rate_per_collection=3, search_rate_per_user=2), clock=clock, memory_used=lambda: 0)
    query = milvus_pb2.QueryRequest
    assert admitted(q, "Query", query(collection_name="a")) == 3
    assert admitted(q, "Query", query(collection_name="b")) == 3
    assert admitted(q, "Query", query(collection_name="a"), Context(db="other")) == 3  # another db's "a"
    with pytest.raises(errors.RateLimited, match="collection=a"):
        q.admit("Query", query(collection_name="a"))
    assert admitted(q, "Search", search(), Context(user="alice")) == 2
    assert admitted(q, "Search", search(), Context(user="bob")) == 2
    with pytest.raises(errors.RateLimited, match="user=alice"):
        q.admit("Search", search(), Context(user="alice"))


def test_dml_rate_in_megabytes_and_ddl_in_calls():
    clock = Clock()
    q = Quota(QuotaSettings(insert_rate=1.0, ddl_collection_rate=2, flush_rate=1), clock=clock, memory_used=lambda: 0)
    big = milvus_pb2.InsertRequest(collection_name="c", num_rows=1,
                                   fields_data=[schema_pb2.FieldData(field_name="v", vectors=schema_pb2.VectorField(
                                       dim=1, float_vector=schema_pb2.FloatArray(data=[0.0] * (1 << 16))))])
    assert 0.2 < big.ByteSize() / MB < 0.3
    assert admitted(q, "Insert", big) == 4  # 1 MB/s: four quarter-MB batches, the fourth into debt
    assert admitted(q, "Upsert", big) == 1000 and admitted(q, "Delete", big) == 1000  # their rates are unset
    assert admitted(q, "CreateCollection", milvus_pb2.CreateCollectionRequest()) == 2
    assert admitted(q, "DropCollection", milvus_pb2.DropCollectionRequest()) == 0  # the same DDL kind
    assert admitted(q, "Flush", milvus_pb2.FlushRequest()) == 1
    assert admitted(q, "HasCollection", milvus_pb2.HasCollectionRequest()) == 1000  # not limited


def test_disabled_quota_limits_nothing():
    q = Quota(QuotaSettings(enabled=False, search_rate=1, memory_limit_bytes=1), memory_used=lambda: 10)
    assert admitted(q, "Search", search()) == 1000
    q.admit("Insert", milvus_pb2.InsertRequest())


def test_memory_protection_refuses_inserts_and_upserts_not_deletes():
    clock = Clock()
    used = [500]
    q = Quota(QuotaSettings(memory_limit_bytes=1000, memory_high_water_level=0.9), clock=clock,
              memory_used=lambda: used[0])
    q.admit("Insert", milvus_pb2.InsertRequest())
    used[0] = 950
    q.admit("Insert", milvus_pb2.InsertRequest())  # measured at most once a second
    clock.now += 1
    with pytest.raises(errors.ForceDeny, match="deny to write, reason: memory quota exceeded") as e:
        q.admit("Insert", milvus_pb2.InsertRequest())
    assert e.value.code == 9 and e.value.legacy_code == "ForceDeny"
    with pytest.raises(errors.ForceDeny):
        q.admit("Upsert", milvus_pb2.UpsertRequest())
    q.admit("Delete", milvus_pb2.DeleteRequest())
    q.admit("Search", search())
    used[0] = 100
    clock.now += 1
    q.admit("Insert", milvus_pb2.InsertRequest())


def test_disk_quota_on_the_data_directory(tmp_path):
    clock = Clock()
    q = Quota(QuotaSettings(disk_quota_mb=1.0), data_dir=str(tmp_path), clock=clock, memory_used=lambda: 0)
    q.admit("Insert", milvus_pb2.InsertRequest())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "blob").write_bytes(b"x" * (2 << 20))
    q.admit("Insert", milvus_pb2.InsertRequest())  # measured every ten seconds
    clock.now += 10
    with pytest.raises(errors.ForceDeny, match="disk quota exceeded"):
        q.admit("Insert", milvus_pb2.InsertRequest())
    with pytest.raises(errors.ForceDeny, match="disk quota exceeded"):
        q.admit("Import", milvus_pb2.ImportRequest())  # a bulk import writes too


def test_settings_from_the_environment():
    s = load_settings(env={"VECDB_QUOTA__SEARCH_RATE_PER_COLLECTION": "50", "VECDB_QUOTA__DISK_QUOTA_MB": "1024"})
    assert s.quota.search_rate_per_collection == 50 and s.quota.disk_quota_mb == 1024
    assert s.quota.insert_rate < 0 and s.quota.enabled
