from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Column(_message.Message):
    __slots__ = ("dtype", "shape", "raw", "json")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    json: JsonValues
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ..., json: _Optional[_Union[JsonValues, _Mapping]] = ...) -> None: ...

class JsonValues(_message.Message):
    __slots__ = ("doc", "elem_dtype")
    DOC_FIELD_NUMBER: _ClassVar[int]
    ELEM_DTYPE_FIELD_NUMBER: _ClassVar[int]
    doc: bytes
    elem_dtype: str
    def __init__(self, doc: _Optional[bytes] = ..., elem_dtype: _Optional[str] = ...) -> None: ...

class NamedColumn(_message.Message):
    __slots__ = ("name", "column")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    name: str
    column: Column
    def __init__(self, name: _Optional[str] = ..., column: _Optional[_Union[Column, _Mapping]] = ...) -> None: ...

class ChannelList(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class IdList(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
