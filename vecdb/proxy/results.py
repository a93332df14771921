"""Build Milvus ``SearchResults`` / ``QueryResults`` messages from numpy results.

Search results are flattened the way Milvus 2.3+ sends them and pymilvus
(2.4 .. 3.x) parses them: hits of all queries concatenated, ``topks[i]`` hits
for query ``i``, with ``ids``, ``scores`` and every ``fields_data`` column in
that same order. ``output_fields`` in the reply holds the user-facing names:
the schema fields, then the requested dynamic keys (or ``$meta`` when all of
the dynamic field was asked for), which is how pymilvus decides which keys of
the ``$meta`` JSON to lift into each entity.

Status fields are left at their defaults (success); errors are raised as
``vecdb.errors`` exceptions and turned into statuses elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdb.errors import InternalError
from vecdb.proxy.fieldencode import fill_field_data, merge_packed
from vecdb.schema import DYNAMIC_FIELD, CollectionSchema, DataType
from vecdb.timestamptz import UTC_OUTPUT, TimeOutput

_SMALL_REPLY = 64  # hits up to which scores are appended as a list rather than packed bytes
_SCORES_FIELD = schema_pb2.SearchResultData.DESCRIPTOR.fields_by_name["scores"].number


def ids_proto(pks: np.ndarray, pk_type: DataType) -> schema_pb2.IDs:
    """Primary keys as ``schema_pb2.IDs`` (``int_id`` for INT64, ``str_id`` for VARCHAR)."""
    ids = schema_pb2.IDs()
    _fill_ids(ids, pks, pk_type)
    return ids


def _fill_ids(ids, pks: np.ndarray, pk_type: DataType) -> None:
    if pk_type == DataType.INT64:
        ids.int_id.SetInParent()
        ids.int_id.data.extend(np.asarray(pks, dtype=np.int64).tolist())
    elif pk_type == DataType.VARCHAR:
        ids.str_id.SetInParent()
        ids.str_id.data.extend(pks.tolist() if isinstance(pks, np.ndarray) else list(pks))
    else:
        raise InternalError(f"primary key type {DataType(pk_type).name} is not supported")


def round_scores(scores: np.ndarray, decimals: int, single: bool = False) -> np.ndarray:
    """Round half away from zero, back to float32. In float64 (``single`` False) as Milvus's proxy rounds
    a hybrid search's fused scores (Go ``math.Floor(x*m + 0.5) / m``); ``single``: as its segcore rounds a
    search's distances (``SubSearchResult::round_values``: a float product, ``std::round``, a float
    quotient), so a JACCARD 0.45 (0.449999988 in float32) to 1 decimal is 0.5 there, not 0.4 (Milvus
    2.3.5, run)."""
    if not single:
        m = 10.0**decimals
        s = np.asarray(scores, dtype=np.float64)
        return (np.sign(s) * np.floor(np.abs(s) * m + 0.5) / m).astype(np.float32)
    m32 = np.float32(10.0**decimals)
    p = (np.asarray(scores, dtype=np.float32) * m32).astype(np.float64)  # the float product, rounded exactly
    return (np.sign(p) * np.floor(np.abs(p) + 0.5)).astype(np.float32) / m32


def _reply_output_fields(output_fields: Sequence[str], dynamic_keys: Sequence[str] | None) -> list[str]:
    names = list(output_fields)
    if dynamic_keys:
        if "*" in dynamic_keys:
            if DYNAMIC_FIELD not in names:
                names.append(DYNAMIC_FIELD)
        else:
            names.extend(k for k in dynamic_keys if k not in names)
    return names


def search_results(
    schema: CollectionSchema,
    nq: int,
    topks: Sequence[int],
    pks: np.ndarray,
    scores: np.ndarray,
    columns: Mapping[str, np.ndarray],
    output_fields: Sequence[str],
    dynamic_keys: Sequence[str] | None,
    round_decimal: int = -1,
    times: TimeOutput = UTC_OUTPUT,
    fused: bool = False,
) -> milvus_pb2.SearchResults:
    """One ``SearchResults`` reply for ``nq`` queries.

    ``pks``/``scores``/``columns`` hold all hits concatenated (query 0's first),
    ``topks[i]`` of them for query ``i``. ``output_fields`` are schema field
    names with a column each; ``dynamic_keys`` as from ``resolve_output_fields``
    (the ``$meta`` column is then needed). ``round_decimal >= 0`` rounds scores (``round_scores``: a
    hybrid search's ``fused`` ones as Milvus's proxy, a search's as its segcore). ``times``: how
    TIMESTAMPTZ values are written (``vecdb.timestamptz.TimeOutput``). ``top_k`` of the reply is the last
    query's number of hits, as Milvus's reduce sets it (``realTopK``), not the limit asked.
    """
    topks = topks if isinstance(topks, list) else np.asarray(topks, dtype=np.int64).tolist()
    total = sum(topks)
    if len(topks) != nq or total != len(pks) or total != len(scores):
        raise InternalError(
            f"inconsistent search result: nq={nq}, {len(topks)} topks summing to {total}, "
            f"{len(pks)} ids, {len(scores)} scores"
        )
    reply = milvus_pb2.SearchResults(collection_name=schema.name)
    res = reply.results
    res.num_queries = nq
    res.top_k = topks[-1] if topks else 0
    res.topks.extend(topks)
    pk = schema.primary_field
    res.primary_field_name = pk.name
    _fill_ids(res.ids, pks, pk.dtype)
    scores = round_scores(scores, round_decimal, single=not fused) if round_decimal >= 0 else scores
    if total > _SMALL_REPLY:
        merge_packed(res, _SCORES_FIELD, np.asarray(scores, dtype="<f4"))
    else:  # a short list is cheaper to extend than to encode
        res.scores.extend(scores.tolist())
    if output_fields or dynamic_keys:
        fill_field_data(res.fields_data.add, schema, columns, output_fields, dynamic_keys, times)
        res.output_fields.extend(_reply_output_fields(output_fields, dynamic_keys))
    return reply


def query_results(
    schema: CollectionSchema,
    columns: Mapping[str, np.ndarray],
    output_fields: Sequence[str],
    dynamic_keys: Sequence[str] | None,
    collection_name: str,
    times: TimeOutput = UTC_OUTPUT,
) -> milvus_pb2.QueryResults:
    """One ``QueryResults`` reply. Like Milvus, the primary key is always returned:
    it is put first when ``output_fields`` lacks it. Every output field gets a
    FieldData even with zero rows (pymilvus rejects a reply without fields)."""
    pk = schema.primary_field.name
    names = list(output_fields)
    if pk not in names:
        names.insert(0, pk)
    reply = milvus_pb2.QueryResults(collection_name=collection_name)
    fill_field_data(reply.fields_data.add, schema, columns, names, dynamic_keys, times)
    reply.output_fields.extend(_reply_output_fields(names, dynamic_keys))
    return reply
