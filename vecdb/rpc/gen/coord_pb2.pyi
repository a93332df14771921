from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AllocRequest(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class AllocTimestampReply(_message.Message):
    __slots__ = ("ts",)
    TS_FIELD_NUMBER: _ClassVar[int]
    ts: int
    def __init__(self, ts: _Optional[int] = ...) -> None: ...

class AllocIDReply(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DdlDatabaseRequest(_message.Message):
    __slots__ = ("name", "properties", "delete_keys", "retry")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    DELETE_KEYS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    name: str
    properties: _containers.ScalarMap[str, str]
    delete_keys: _containers.RepeatedScalarFieldContainer[str]
    retry: bool
    def __init__(self, name: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ..., delete_keys: _Optional[_Iterable[str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlCreateCollectionRequest(_message.Message):
    __slots__ = ("db", "name", "schema_json", "shards_num", "consistency_level", "properties", "num_partitions", "retry")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    SHARDS_NUM_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    schema_json: str
    shards_num: int
    consistency_level: int
    properties: _containers.ScalarMap[str, str]
    num_partitions: int
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., schema_json: _Optional[str] = ..., shards_num: _Optional[int] = ..., consistency_level: _Optional[int] = ..., properties: _Optional[_Mapping[str, str]] = ..., num_partitions: _Optional[int] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlCollectionRequest(_message.Message):
    __slots__ = ("db", "name", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlRenameCollectionRequest(_message.Message):
    __slots__ = ("db", "name", "new_db", "new_name", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_DB_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    new_db: str
    new_name: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., new_db: _Optional[str] = ..., new_name: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlAlterCollectionRequest(_message.Message):
    __slots__ = ("db", "name", "properties", "delete_keys", "retry")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    DELETE_KEYS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    properties: _containers.ScalarMap[str, str]
    delete_keys: _containers.RepeatedScalarFieldContainer[str]
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ..., delete_keys: _Optional[_Iterable[str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlAddFieldRequest(_message.Message):
    __slots__ = ("db", "name", "field_json", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_JSON_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    field_json: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., field_json: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlSchemaChangeRequest(_message.Message):
    __slots__ = ("db", "name", "change_json", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANGE_JSON_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    change_json: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., change_json: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlAlterFieldRequest(_message.Message):
    __slots__ = ("db", "name", "field_name", "properties", "delete_keys", "retry")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    DELETE_KEYS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    name: str
    field_name: str
    properties: _containers.ScalarMap[str, str]
    delete_keys: _containers.RepeatedScalarFieldContainer[str]
    retry: bool
    def __init__(self, db: _Optional[str] = ..., name: _Optional[str] = ..., field_name: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ..., delete_keys: _Optional[_Iterable[str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlPartitionRequest(_message.Message):
    __slots__ = ("db", "collection", "partition", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    partition: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., partition: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlAliasRequest(_message.Message):
    __slots__ = ("db", "alias", "collection", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    alias: str
    collection: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., alias: _Optional[str] = ..., collection: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlCreateIndexRequest(_message.Message):
    __slots__ = ("db", "collection", "field_name", "index_name", "index_type", "metric_type", "params_json", "user_params_json", "properties", "retry")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FIELD_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    USER_PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    field_name: str
    index_name: str
    index_type: str
    metric_type: str
    params_json: str
    user_params_json: str
    properties: _containers.ScalarMap[str, str]
    retry: bool
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., field_name: _Optional[str] = ..., index_name: _Optional[str] = ..., index_type: _Optional[str] = ..., metric_type: _Optional[str] = ..., params_json: _Optional[str] = ..., user_params_json: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlAlterIndexRequest(_message.Message):
    __slots__ = ("db", "collection", "index_name", "properties", "delete_keys")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    DELETE_KEYS_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    index_name: str
    properties: _containers.ScalarMap[str, str]
    delete_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., index_name: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ..., delete_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class DdlDropIndexRequest(_message.Message):
    __slots__ = ("db", "collection", "index_name", "field_name", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INDEX_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELD_NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    index_name: str
    field_name: str
    retry: bool
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., index_name: _Optional[str] = ..., field_name: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlLoadState(_message.Message):
    __slots__ = ("loaded", "all_partitions", "loaded_partitions", "replica_number", "resource_groups")
    LOADED_FIELD_NUMBER: _ClassVar[int]
    ALL_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    LOADED_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_NUMBER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    loaded: bool
    all_partitions: bool
    loaded_partitions: _containers.RepeatedScalarFieldContainer[int]
    replica_number: int
    resource_groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, loaded: _Optional[bool] = ..., all_partitions: _Optional[bool] = ..., loaded_partitions: _Optional[_Iterable[int]] = ..., replica_number: _Optional[int] = ..., resource_groups: _Optional[_Iterable[str]] = ...) -> None: ...

class DdlLoadRequest(_message.Message):
    __slots__ = ("db", "collection", "all_partitions", "partition_names", "replica_number", "resource_groups", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ALL_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_NAMES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_NUMBER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    all_partitions: bool
    partition_names: _containers.RepeatedScalarFieldContainer[str]
    replica_number: int
    resource_groups: _containers.RepeatedScalarFieldContainer[str]
    retry: bool
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., all_partitions: _Optional[bool] = ..., partition_names: _Optional[_Iterable[str]] = ..., replica_number: _Optional[int] = ..., resource_groups: _Optional[_Iterable[str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlUndoLoadRequest(_message.Message):
    __slots__ = ("collection_id", "before", "retry")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    before: DdlLoadState
    retry: bool
    def __init__(self, collection_id: _Optional[int] = ..., before: _Optional[_Union[DdlLoadState, _Mapping]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlReleaseRequest(_message.Message):
    __slots__ = ("db", "collection", "all_partitions", "partition_names", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ALL_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PARTITION_NAMES_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    all_partitions: bool
    partition_names: _containers.RepeatedScalarFieldContainer[str]
    retry: bool
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., all_partitions: _Optional[bool] = ..., partition_names: _Optional[_Iterable[str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlTransferReplicaRequest(_message.Message):
    __slots__ = ("db", "collection", "source", "target", "num_replica", "retry")
    DB_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NUM_REPLICA_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    db: str
    collection: str
    source: str
    target: str
    num_replica: int
    retry: bool
    def __init__(self, db: _Optional[str] = ..., collection: _Optional[str] = ..., source: _Optional[str] = ..., target: _Optional[str] = ..., num_replica: _Optional[int] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlResourceGroupRequest(_message.Message):
    __slots__ = ("name", "config_json", "retry")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    name: str
    config_json: str
    retry: bool
    def __init__(self, name: _Optional[str] = ..., config_json: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlUpdateResourceGroupsRequest(_message.Message):
    __slots__ = ("configs_json", "retry")
    class ConfigsJsonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONFIGS_JSON_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    configs_json: _containers.ScalarMap[str, str]
    retry: bool
    def __init__(self, configs_json: _Optional[_Mapping[str, str]] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlTransferNodeRequest(_message.Message):
    __slots__ = ("source", "target", "num", "retry")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    num: int
    retry: bool
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., num: _Optional[int] = ..., retry: _Optional[bool] = ...) -> None: ...

class DdlReply(_message.Message):
    __slots__ = ("version", "found", "id", "ids", "before")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    version: int
    found: bool
    id: int
    ids: _containers.RepeatedScalarFieldContainer[int]
    before: DdlLoadState
    def __init__(self, version: _Optional[int] = ..., found: _Optional[bool] = ..., id: _Optional[int] = ..., ids: _Optional[_Iterable[int]] = ..., before: _Optional[_Union[DdlLoadState, _Mapping]] = ...) -> None: ...

class FlushRequest(_message.Message):
    __slots__ = ("collection_id", "channels")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection_id: _Optional[int] = ..., channels: _Optional[_Iterable[str]] = ...) -> None: ...

class FlushReply(_message.Message):
    __slots__ = ("segment_ids", "ts", "unpersisted", "positions")
    class UnpersistedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class PositionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    UNPERSISTED_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[int]
    ts: int
    unpersisted: _containers.ScalarMap[str, int]
    positions: _containers.ScalarMap[str, int]
    def __init__(self, segment_ids: _Optional[_Iterable[int]] = ..., ts: _Optional[int] = ..., unpersisted: _Optional[_Mapping[str, int]] = ..., positions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class MoveSegmentsRequest(_message.Message):
    __slots__ = ("collection_id", "source", "targets", "segment_ids", "wait_seconds")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    collection_id: int
    source: int
    targets: _containers.RepeatedScalarFieldContainer[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[int]
    wait_seconds: float
    def __init__(self, collection_id: _Optional[int] = ..., source: _Optional[int] = ..., targets: _Optional[_Iterable[int]] = ..., segment_ids: _Optional[_Iterable[int]] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class MoveSegmentsReply(_message.Message):
    __slots__ = ("moved",)
    class MovedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    MOVED_FIELD_NUMBER: _ClassVar[int]
    moved: _containers.ScalarMap[int, int]
    def __init__(self, moved: _Optional[_Mapping[int, int]] = ...) -> None: ...
