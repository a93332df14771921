from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ValueReply(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ScanReply(_message.Message):
    __slots__ = ("keys", "values", "revision")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    revision: int
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[bytes]] = ..., revision: _Optional[int] = ...) -> None: ...

class Expected(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ("put_keys", "put_values", "deletes", "delete_prefixes", "expect", "lease")
    PUT_KEYS_FIELD_NUMBER: _ClassVar[int]
    PUT_VALUES_FIELD_NUMBER: _ClassVar[int]
    DELETES_FIELD_NUMBER: _ClassVar[int]
    DELETE_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    put_keys: _containers.RepeatedScalarFieldContainer[str]
    put_values: _containers.RepeatedScalarFieldContainer[bytes]
    deletes: _containers.RepeatedScalarFieldContainer[str]
    delete_prefixes: _containers.RepeatedScalarFieldContainer[str]
    expect: _containers.RepeatedCompositeFieldContainer[Expected]
    lease: int
    def __init__(self, put_keys: _Optional[_Iterable[str]] = ..., put_values: _Optional[_Iterable[bytes]] = ..., deletes: _Optional[_Iterable[str]] = ..., delete_prefixes: _Optional[_Iterable[str]] = ..., expect: _Optional[_Iterable[_Union[Expected, _Mapping]]] = ..., lease: _Optional[int] = ...) -> None: ...

class TxnReply(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    def __init__(self, applied: _Optional[bool] = ...) -> None: ...

class GrantLeaseRequest(_message.Message):
    __slots__ = ("ttl",)
    TTL_FIELD_NUMBER: _ClassVar[int]
    ttl: float
    def __init__(self, ttl: _Optional[float] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("lease",)
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease: int
    def __init__(self, lease: _Optional[int] = ...) -> None: ...

class LeaseReply(_message.Message):
    __slots__ = ("lease",)
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease: int
    def __init__(self, lease: _Optional[int] = ...) -> None: ...

class RenewLeaseReply(_message.Message):
    __slots__ = ("alive",)
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    alive: bool
    def __init__(self, alive: _Optional[bool] = ...) -> None: ...

class WatchOpenRequest(_message.Message):
    __slots__ = ("prefix", "start_revision")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    start_revision: int
    def __init__(self, prefix: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchOpenReply(_message.Message):
    __slots__ = ("watch_id", "compacted", "start_revision")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    compacted: str
    start_revision: int
    def __init__(self, watch_id: _Optional[int] = ..., compacted: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchPollRequest(_message.Message):
    __slots__ = ("watch_id", "timeout", "max_events")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    timeout: float
    max_events: int
    def __init__(self, watch_id: _Optional[int] = ..., timeout: _Optional[float] = ..., max_events: _Optional[int] = ...) -> None: ...

class WatchPollReply(_message.Message):
    __slots__ = ("kinds", "keys", "values", "revisions", "compacted", "gone")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    revisions: _containers.RepeatedScalarFieldContainer[int]
    compacted: str
    gone: bool
    def __init__(self, kinds: _Optional[_Iterable[int]] = ..., keys: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[bytes]] = ..., revisions: _Optional[_Iterable[int]] = ..., compacted: _Optional[str] = ..., gone: _Optional[bool] = ...) -> None: ...

class WatchCloseRequest(_message.Message):
    __slots__ = ("watch_id",)
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    def __init__(self, watch_id: _Optional[int] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("channel", "payloads", "expect_last")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    EXPECT_LAST_FIELD_NUMBER: _ClassVar[int]
    channel: str
    payloads: _containers.RepeatedScalarFieldContainer[bytes]
    expect_last: int
    def __init__(self, channel: _Optional[str] = ..., payloads: _Optional[_Iterable[bytes]] = ..., expect_last: _Optional[int] = ...) -> None: ...

class AppendReply(_message.Message):
    __slots__ = ("first", "count")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    first: int
    count: int
    def __init__(self, first: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("channel", "start", "end", "max_bytes")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    start: int
    end: int
    max_bytes: int
    def __init__(self, channel: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class Records(_message.Message):
    __slots__ = ("positions", "payloads", "limit")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedScalarFieldContainer[int]
    payloads: _containers.RepeatedScalarFieldContainer[bytes]
    limit: int
    def __init__(self, positions: _Optional[_Iterable[int]] = ..., payloads: _Optional[_Iterable[bytes]] = ..., limit: _Optional[int] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("channel", "after", "timeout", "max_records", "max_bytes")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    after: int
    timeout: float
    max_records: int
    max_bytes: int
    def __init__(self, channel: _Optional[str] = ..., after: _Optional[int] = ..., timeout: _Optional[float] = ..., max_records: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class FollowManyRequest(_message.Message):
    __slots__ = ("channels", "after", "timeout", "max_records", "max_bytes")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[str]
    after: _containers.RepeatedScalarFieldContainer[int]
    timeout: float
    max_records: int
    max_bytes: int
    def __init__(self, channels: _Optional[_Iterable[str]] = ..., after: _Optional[_Iterable[int]] = ..., timeout: _Optional[float] = ..., max_records: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class FollowManyReply(_message.Message):
    __slots__ = ("indexes", "pages")
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedScalarFieldContainer[int]
    pages: _containers.RepeatedCompositeFieldContainer[Records]
    def __init__(self, indexes: _Optional[_Iterable[int]] = ..., pages: _Optional[_Iterable[_Union[Records, _Mapping]]] = ...) -> None: ...

class ChannelRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class PositionReply(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class PositionsReply(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, positions: _Optional[_Iterable[int]] = ...) -> None: ...

class TruncateRequest(_message.Message):
    __slots__ = ("channel", "position")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    channel: str
    position: int
    def __init__(self, channel: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...
