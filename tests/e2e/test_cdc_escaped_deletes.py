"""CDC deletes of VARCHAR primary keys holding quotes, backslashes and line breaks: the task deletes
them on the target through escaped literals (pymilvus's ``delete(ids=...)`` writes such a key into
its filter unescaped, the target refused it, and the task retried that delete for ever, holding back
every collection)."""

from __future__ import annotations

import json

from pymilvus import DataType, MilvusClient

from tests.conftest import start_standalone
from tests.e2e.test_cdc import replicating
from vecdb.cdc.task import new_task_id

KEYS = ["plain", "it's", 'say "hi"', "back\\slash", "tail\\", "line\nbreak", "mixé'\"\\"]


def _filter(keys: list[str]) -> str:
    return f"pk in [{', '.join(json.dumps(k) for k in keys)}]"


def test_deletes_of_keys_with_quotes_and_backslashes_replicate(tmp_path, remote_storage):
    target = start_standalone(str(tmp_path / "dst"))
    tu = f"http://127.0.0.1:{target.port}"
    with replicating(tmp_path, remote_storage("cdcesc" + new_task_id()), target, tu) as stream:
        c, t = MilvusClient(uri=stream.source_uri), MilvusClient(uri=tu)
        schema = c.create_schema()
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
        ip = c.prepare_index_params()
        ip.add_index("vector", index_type="FLAT", metric_type="L2")
        c.create_collection("keys", schema=schema, index_params=ip)
        c.create_partition("keys", "p1")
        c.insert("keys", [{"pk": k, "vector": [float(i), 0.0]} for i, k in enumerate(KEYS)])
        c.insert("keys", [{"pk": "p1" + k, "vector": [1.0, 1.0]} for k in KEYS], partition_name="p1")
        c.delete("keys", filter=_filter(KEYS[1:]))  # the source's own delete, with the keys escaped
        c.delete("keys", filter=_filter(["p1" + k for k in KEYS[2:]]), partition_name="p1")
        c.create_collection("after", dimension=2)  # a collection behind the deletes in the task's pass
        c.insert("after", [{"id": 1, "vector": [0.5, 0.5]}])
        stream.wait_equal(60, "the deletes not replicated")
        kept = sorted(r["pk"] for r in t.query("keys", filter="", limit=100, consistency_level="Strong"))
        assert kept == ["p1it's", "p1plain", "plain"]
        assert t.query("after", filter="id >= 0", consistency_level="Strong")[0]["id"] == 1
        assert stream.rep.progress.last_error == ""
