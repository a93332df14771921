"""Found by the chaos hunt (with the segment that had lost its files, ``test_chaos_lostfiles.py``): a data node
whose manual compaction of a channel kept failing ran its compaction rounds back to back, about six a second
for as long as the request stood, each logging the failure (18 MB of log in four minutes). Each round set the
channel's state in the request record to executing, a write of the same value; the data node watches the
request records (another process's request wakes it), so the write woke it again at once. An unchanged state
is not written any more (``vecdb/datanode/compactor.py``, ``update_request``): a failed round waits for the
next interval or a real change.

A standalone server's backends, and a data node's compactor on them that watches the requests, as a data
node process's does.
"""

from __future__ import annotations

import json
import time

from tests.e2e._helpers import float_schema, make_collection
from vecdb.datanode.compactor import REQUEST_PREFIX, request_compaction
from vecdb.datanode.node import DataNode
from vecdb.storage import segments as sf

DIM = 4


def test_a_compaction_that_keeps_failing_does_not_wake_itself(own_standalone):
    server, client = own_standalone
    make_collection(client, "c", float_schema(DIM), load=False, num_shards=1)
    for start in (0, 50):  # two segments: a manual compaction merges them, reading both
        client.insert("c", [{"id": i, "vec": [float(i)] * DIM} for i in range(start, start + 50)])
        client.flush("c")
    info = server.roles.catalog.get("default", "c")
    channel = info.channels[0]
    segments = sf.list_segments(server.meta, info.id, channel)
    assert len(segments) == 2
    server.objects.delete_prefix(segments[0]["prefix"])  # its files gone: every try of the compaction fails
    request_compaction(server.meta, server.roles.ids.allocate(), info)

    node = DataNode(server.wal, server.meta, server.objects, server.roles.ids, truncate=False)
    rounds = []
    run_once = node.compactor.run_once

    def counted() -> None:
        rounds.append(time.monotonic())
        run_once()

    node.compactor.run_once = counted
    try:
        node.compactor.start(lambda: {channel: info.id}, watch_requests=True)
        time.sleep(3.0)
        states = [json.loads(raw)["channels"][channel]["state"] for _, raw in server.meta.scan(REQUEST_PREFIX)]
        assert states == ["executing"]  # it did try, and failed
        # its first round, and one more for the watch's first look at the requests at most (before: 60 and more)
        assert 1 <= len(rounds) <= 3, len(rounds)
    finally:
        node.close()
