from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadScope(_message.Message):
    __slots__ = ("collection_id", "ts", "filter", "partition_ids", "wait", "channels", "segments", "sealed_only")
    class WaitEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class SegmentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SegmentScope
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SegmentScope, _Mapping]] = ...) -> None: ...
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARTITION_IDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    SEALED_ONLY_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    ts: int
    filter: Filter
    partition_ids: _common_pb2.IdList
    wait: _containers.ScalarMap[str, int]
    channels: _common_pb2.ChannelList
    segments: _containers.MessageMap[str, SegmentScope]
    sealed_only: bool
    def __init__(self, collection_id: _Optional[int] = ..., ts: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., partition_ids: _Optional[_Union[_common_pb2.IdList, _Mapping]] = ..., wait: _Optional[_Mapping[str, int]] = ..., channels: _Optional[_Union[_common_pb2.ChannelList, _Mapping]] = ..., segments: _Optional[_Mapping[str, SegmentScope]] = ..., sealed_only: _Optional[bool] = ...) -> None: ...

class SegmentScope(_message.Message):
    __slots__ = ("rest", "prefixes")
    REST_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    rest: bool
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rest: _Optional[bool] = ..., prefixes: _Optional[_Iterable[str]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("expr", "template_json")
    EXPR_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_JSON_FIELD_NUMBER: _ClassVar[int]
    expr: str
    template_json: str
    def __init__(self, expr: _Optional[str] = ..., template_json: _Optional[str] = ...) -> None: ...

class Bm25StatsReply(_message.Message):
    __slots__ = ("rows", "tokens", "terms", "df")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    DF_FIELD_NUMBER: _ClassVar[int]
    rows: int
    tokens: float
    terms: _containers.RepeatedScalarFieldContainer[int]
    df: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, rows: _Optional[int] = ..., tokens: _Optional[float] = ..., terms: _Optional[_Iterable[int]] = ..., df: _Optional[_Iterable[int]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("scope", "field", "queries", "limit", "offset", "metric", "params_json", "index_type", "radius", "range_filter", "output_fields", "ignore_growing")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FILTER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELDS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_GROWING_FIELD_NUMBER: _ClassVar[int]
    scope: ReadScope
    field: str
    queries: _common_pb2.Column
    limit: int
    offset: int
    metric: str
    params_json: str
    index_type: str
    radius: float
    range_filter: float
    output_fields: _containers.RepeatedScalarFieldContainer[str]
    ignore_growing: bool
    def __init__(self, scope: _Optional[_Union[ReadScope, _Mapping]] = ..., field: _Optional[str] = ..., queries: _Optional[_Union[_common_pb2.Column, _Mapping]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., metric: _Optional[str] = ..., params_json: _Optional[str] = ..., index_type: _Optional[str] = ..., radius: _Optional[float] = ..., range_filter: _Optional[float] = ..., output_fields: _Optional[_Iterable[str]] = ..., ignore_growing: _Optional[bool] = ...) -> None: ...

class SearchReply(_message.Message):
    __slots__ = ("topks", "pks", "scores", "columns")
    TOPKS_FIELD_NUMBER: _ClassVar[int]
    PKS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    topks: _containers.RepeatedScalarFieldContainer[int]
    pks: _common_pb2.Column
    scores: _common_pb2.Column
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.NamedColumn]
    def __init__(self, topks: _Optional[_Iterable[int]] = ..., pks: _Optional[_Union[_common_pb2.Column, _Mapping]] = ..., scores: _Optional[_Union[_common_pb2.Column, _Mapping]] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.NamedColumn, _Mapping]]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("scope", "output_fields", "limit", "offset", "aggregation", "order")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    scope: ReadScope
    output_fields: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    offset: int
    aggregation: Aggregation
    order: QueryOrder
    def __init__(self, scope: _Optional[_Union[ReadScope, _Mapping]] = ..., output_fields: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., aggregation: _Optional[_Union[Aggregation, _Mapping]] = ..., order: _Optional[_Union[QueryOrder, _Mapping]] = ...) -> None: ...

class QueryOrder(_message.Message):
    __slots__ = ("fields", "ascending", "top")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedScalarFieldContainer[str]
    ascending: _containers.RepeatedScalarFieldContainer[bool]
    top: int
    def __init__(self, fields: _Optional[_Iterable[str]] = ..., ascending: _Optional[_Iterable[bool]] = ..., top: _Optional[int] = ...) -> None: ...

class Aggregation(_message.Message):
    __slots__ = ("group_by", "aggregates")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    aggregates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group_by: _Optional[_Iterable[str]] = ..., aggregates: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryReply(_message.Message):
    __slots__ = ("columns",)
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.NamedColumn]
    def __init__(self, columns: _Optional[_Iterable[_Union[_common_pb2.NamedColumn, _Mapping]]] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: ReadScope
    def __init__(self, scope: _Optional[_Union[ReadScope, _Mapping]] = ...) -> None: ...

class CountReply(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class LoadRequest(_message.Message):
    __slots__ = ("collection_id", "channels")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    channels: _common_pb2.ChannelList
    def __init__(self, collection_id: _Optional[int] = ..., channels: _Optional[_Union[_common_pb2.ChannelList, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("collection_id", "channels")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    channels: _common_pb2.ChannelList
    def __init__(self, collection_id: _Optional[int] = ..., channels: _Optional[_Union[_common_pb2.ChannelList, _Mapping]] = ...) -> None: ...

class LoadedReply(_message.Message):
    __slots__ = ("collection_ids",)
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    collection_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, collection_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ChannelRows(_message.Message):
    __slots__ = ("rows",)
    class RowsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.ScalarMap[str, int]
    def __init__(self, rows: _Optional[_Mapping[str, int]] = ...) -> None: ...

class HeldReply(_message.Message):
    __slots__ = ("held",)
    class HeldEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: ChannelRows
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[ChannelRows, _Mapping]] = ...) -> None: ...
    HELD_FIELD_NUMBER: _ClassVar[int]
    held: _containers.MessageMap[int, ChannelRows]
    def __init__(self, held: _Optional[_Mapping[int, ChannelRows]] = ...) -> None: ...

class CollectionRequest(_message.Message):
    __slots__ = ("collection_id",)
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    def __init__(self, collection_id: _Optional[int] = ...) -> None: ...

class DropPartitionRequest(_message.Message):
    __slots__ = ("collection_id", "partition_id")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_ID_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    partition_id: int
    def __init__(self, collection_id: _Optional[int] = ..., partition_id: _Optional[int] = ...) -> None: ...

class GrowingRowsRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class GrowingRowsReply(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    def __init__(self, rows: _Optional[int] = ...) -> None: ...

class IndexStateRequest(_message.Message):
    __slots__ = ("collection_id", "field", "channels")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    field: str
    channels: _common_pb2.ChannelList
    def __init__(self, collection_id: _Optional[int] = ..., field: _Optional[str] = ..., channels: _Optional[_Union[_common_pb2.ChannelList, _Mapping]] = ...) -> None: ...

class IndexStateReply(_message.Message):
    __slots__ = ("indexed", "total", "segment_ids", "segment_rows", "segment_indexed")
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ROWS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_INDEXED_FIELD_NUMBER: _ClassVar[int]
    indexed: int
    total: int
    segment_ids: _containers.RepeatedScalarFieldContainer[int]
    segment_rows: _containers.RepeatedScalarFieldContainer[int]
    segment_indexed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, indexed: _Optional[int] = ..., total: _Optional[int] = ..., segment_ids: _Optional[_Iterable[int]] = ..., segment_rows: _Optional[_Iterable[int]] = ..., segment_indexed: _Optional[_Iterable[int]] = ...) -> None: ...

class SegmentInfosRequest(_message.Message):
    __slots__ = ("collection_id", "channels")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    channels: _common_pb2.ChannelList
    def __init__(self, collection_id: _Optional[int] = ..., channels: _Optional[_Union[_common_pb2.ChannelList, _Mapping]] = ...) -> None: ...

class SegmentInfo(_message.Message):
    __slots__ = ("segment_id", "partition_id", "num_rows", "state", "index_id", "index_name")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITION_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    partition_id: int
    num_rows: int
    state: int
    index_id: int
    index_name: str
    def __init__(self, segment_id: _Optional[int] = ..., partition_id: _Optional[int] = ..., num_rows: _Optional[int] = ..., state: _Optional[int] = ..., index_id: _Optional[int] = ..., index_name: _Optional[str] = ...) -> None: ...

class SegmentInfosReply(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentInfo]
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentInfo, _Mapping]]] = ...) -> None: ...
