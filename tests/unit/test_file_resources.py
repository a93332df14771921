"""File resources (vecdb.file_resources) and the analyzer params that read them (vecdb.analyzer)."""

from __future__ import annotations

import itertools
import json

import pytest

from vecdb import bm25, file_resources
from vecdb.analyzer import parse_multi_params, parse_params
from vecdb.errors import InvalidParameter
from vecdb.schema import DataType, FieldSchema
from vecdb.storage.memory import MemoryMetaStore, MemoryObjectStore

_ids = itertools.count(1000)


def new_id() -> int:
    return next(_ids)


@pytest.fixture
def reg():
    meta, objects = MemoryMetaStore(), MemoryObjectStore()
    r = file_resources.install(meta, objects)
    yield r
    file_resources.uninstall(r)


def remote(name: str, file_name: str) -> dict:
    return {"type": "remote", "resource_name": name, "file_name": file_name}


def no_users(_name: str) -> list[str]:
    return []


# --- the registry ------------------------------------------------------------------------------------------
def test_add_list_idempotent_and_conflicts(reg):
    reg.objects.put("dicts/stop.txt", b"a\nb\n")
    reg.objects.put("dicts/other.txt", b"x\n")
    rec = reg.add("stop", "dicts/stop.txt", new_id)
    assert (rec.name, rec.path, rec.file_name) == ("stop", "dicts/stop.txt", "stop.txt")
    assert reg.add("stop", "dicts/stop.txt", new_id) == rec  # same name and path: a no-op
    with pytest.raises(InvalidParameter, match="already exists with another path"):
        reg.add("stop", "dicts/other.txt", new_id)
    other = reg.add("other", "dicts/other.txt", new_id)
    assert [r.name for r in reg.entries()] == ["stop", "other"]
    assert other.id != rec.id


def test_add_refusals(reg):
    reg.objects.put("f.txt", b"x")
    with pytest.raises(InvalidParameter, match="name should not be empty"):
        reg.add("", "f.txt", new_id)
    with pytest.raises(InvalidParameter, match="path should not be empty"):
        reg.add("n", "", new_id)
    with pytest.raises(InvalidParameter, match="file resource path not exist") as e:
        reg.add("n", "nowhere/f.txt", new_id)
    assert e.value.code == 1100  # Milvus: 65535
    assert reg.entries() == []


def test_remove_missing_in_use_and_after(reg):
    reg.objects.put("f.txt", b"x")
    assert reg.remove("nothing", no_users) is False  # removing a missing name succeeds
    rec = reg.add("r", "f.txt", new_id)
    with pytest.raises(InvalidParameter, match="still in use by collection.*default.c1"):
        reg.remove("r", lambda name: ["default.c1"])
    assert reg.get("r") == rec
    assert reg.remove("r", no_users) is True
    assert reg.get("r") is None and reg.objects.list(f"{file_resources.OBJECT_PREFIX}{rec.id}/") == []
    assert reg.remove("r", no_users) is False  # twice: still fine
    again = reg.add("r", "f.txt", new_id)  # a removed name may come again, a new resource
    assert again.id != rec.id


def test_content_is_the_copy_made_at_add(reg):
    reg.objects.put("stop.txt", b"alpha\n")
    reg.add("s", "stop.txt", new_id)
    reg.objects.put("stop.txt", b"beta\n")  # the file changes after it was added: analyzers keep the copy
    a = parse_params({"tokenizer": "standard",
                      "filter": [{"type": "stop", "stop_words_file": remote("s", "stop.txt")}]})
    assert a.tokens("alpha beta") == ["beta"]


def test_a_server_file_path_is_never_read(tmp_path):
    """Only object-store keys: a path on the server's file system (its secrets, its config) is no file
    resource, so no analyzer message can quote it."""
    path = tmp_path / "secret.txt"
    path.write_bytes(b"db_password=hunter2\n")
    reg = file_resources.FileResources(MemoryMetaStore(), MemoryObjectStore())
    for p in (str(path), "/etc/hostname"):
        with pytest.raises(InvalidParameter, match="not exist"):
            reg.add("w", p, new_id)


def test_file_refs_and_schema_resources():
    params = {"tokenizer": {"type": "jieba", "extra_dict_file": remote("d", "d.txt")},
              "filter": [{"type": "stop", "stop_words_file": remote("s", "s.txt")}, "lowercase"]}
    assert sorted(file_resources.file_refs(json.dumps(params))) == [("d", "d.txt"), ("s", "s.txt")]
    assert list(file_resources.file_refs('{"tokenizer": "standard"}')) == []
    multi = {"by_field": "lang", "analyzers": {"default": {"tokenizer": "standard", "filter": [
        {"type": "synonym", "synonyms_file": remote("syn", "syn.txt")}]}}}
    fields = [FieldSchema("t", DataType.VARCHAR, type_params={"analyzer_params": json.dumps(params)}),
              FieldSchema("m", DataType.VARCHAR, type_params={"multi_analyzer_params": json.dumps(multi)})]
    schema = type("S", (), {"fields": fields})()
    assert file_resources.schema_resources(schema) == {"d", "s", "syn"}


# --- analyzers reading files -------------------------------------------------------------------------------
def test_stop_words_file(reg):
    reg.objects.put("lists/stop_words.txt", "the\nof\r\nésta\n".encode())  # \r\n lines too
    reg.add("stop", "lists/stop_words.txt", new_id)
    a = parse_params({"tokenizer": "standard", "filter": [
        "lowercase", {"type": "stop", "stop_words": ["a"], "stop_words_file": remote("stop", "stop_words.txt")}]})
    assert a.tokens("The Rest of a story ésta") == ["rest", "story"]


def test_synonyms_file(reg):
    reg.objects.put("syn/synonyms.txt", b"happy, joyful\n\nfast, quick => speedy\n")
    reg.add("syn", "syn/synonyms.txt", new_id)
    expand = parse_params({"tokenizer": "standard", "filter": [
        {"type": "synonym", "synonyms": ["car, auto"], "synonyms_file": remote("syn", "synonyms.txt")}]})
    assert expand.tokens("happy car quick") == ["happy", "joyful", "car", "auto", "speedy", "quick"]
    plain = parse_params({"tokenizer": "standard", "filter": [
        {"type": "synonym", "expand": False, "synonyms_file": remote("syn", "synonyms.txt")}]})
    assert plain.tokens("joyful fast") == ["happy", "speedy"]


def test_word_list_file(reg):
    reg.objects.put("decompounder_dict.txt", b"bank\nnote\nfire\nwork\n")
    reg.add("dec", "decompounder_dict.txt", new_id)
    a = parse_params({"tokenizer": "standard", "filter": [
        {"type": "decompounder", "word_list_file": remote("dec", "decompounder_dict.txt")}]})
    assert a.tokens("banknote firework") == ["bank", "note", "fire", "work"]
    reg.objects.put("empty.txt", b"")
    reg.add("empty", "empty.txt", new_id)
    with pytest.raises(InvalidParameter, match="decompounder word list is empty"):
        parse_params({"tokenizer": "standard", "filter": [
            {"type": "decompounder", "word_list_file": remote("empty", "empty.txt")}]})


def test_jieba_extra_dict_file(reg):
    text = "向量数据库是新一代的数据管理系统"
    default = parse_params({"tokenizer": "jieba"}).tokens(text)
    assert "向量数据库" not in default
    reg.objects.put("jieba/jieba_dict.txt", "向量数据库 100 n\n语义搜索\n\n".encode())
    reg.add("jd", "jieba/jieba_dict.txt", new_id)
    a = parse_params({"tokenizer": {"type": "jieba", "mode": "exact",
                                    "extra_dict_file": remote("jd", "jieba_dict.txt")}})
    assert "向量数据库" in a.tokens(text)
    assert "语义搜索" in a.tokens("语义搜索可以理解用户意图")
    reg.objects.put("bad.txt", "词 many\n".encode())
    reg.add("bad", "bad.txt", new_id)
    with pytest.raises(InvalidParameter, match="jieba tokenizer load dict file failed"):
        parse_params({"tokenizer": {"type": "jieba", "extra_dict_file": remote("bad", "bad.txt")}})


@pytest.mark.parametrize("spec, words", [
    ("x", "file config of stop_words_file (stop words dict file) must be object"),
    ({"resource_name": "r", "file_name": "f.txt"}, "file type of stop_words_file (stop words dict file) must be set"),
    ({"type": 1}, "must be string"),
    ({"type": "unknown", "resource_name": "r", "file_name": "f.txt"}, "unsupported file type unknown"),
    ({"type": "local", "path": "/etc/hosts"}, "local file of stop_words_file (stop words dict file)"),
    ({"type": "remote", "file_name": "f.txt"}, "resource name of remote file"),
    ({"type": "remote", "resource_name": "r"}, "file name of remote file"),
    ({"type": "remote", "resource_name": "nonexist_resource", "file_name": "f.txt"},
     "file resource: nonexist_resource not found"),
    ({"type": "remote", "resource_name": "r", "file_name": "other.txt"}, "file other.txt of"),
])
def test_bad_file_references_are_refused(reg, spec, words):
    reg.objects.put("dir/f.txt", b"x\n")
    reg.add("r", "dir/f.txt", new_id)
    with pytest.raises(InvalidParameter) as e:
        parse_params({"tokenizer": "standard", "filter": [{"type": "stop", "stop_words_file": spec}]}, "text")
    assert words in e.value.message and e.value.code == 1100
    assert "of field (text)" in e.value.message


def test_not_utf8_is_refused(reg):
    reg.objects.put("latin1.txt", "caf\xe9\n".encode("latin-1"))
    reg.add("l1", "latin1.txt", new_id)
    with pytest.raises(InvalidParameter, match="valid UTF-8"):
        parse_params({"tokenizer": "standard", "filter": [{"type": "stop", "stop_words_file": remote("l1",
                                                                                                  "latin1.txt")}]})


def test_no_registry_in_process_is_a_clear_refusal():
    file_resources.uninstall()
    with pytest.raises(InvalidParameter, match="not found"):
        parse_params({"tokenizer": "standard", "filter": [{"type": "stop", "stop_words_file": remote("r", "f")}]})


def test_cached_analyzers_follow_a_readded_resource(reg):
    reg.objects.put("a/s.txt", b"alpha\n")
    reg.objects.put("b/s.txt", b"beta\n")
    reg.add("s", "a/s.txt", new_id)
    params = json.dumps({"tokenizer": "standard", "filter": [{"type": "stop", "stop_words_file": remote("s",
                                                                                                        "s.txt")}]})
    field = FieldSchema("t", DataType.VARCHAR, type_params={"analyzer_params": params, "enable_analyzer": "true"})
    assert bm25.text_analyzer(field).tokens("alpha beta") == ["beta"]
    assert bm25.text_analyzer(field) is bm25.text_analyzer(field)  # cached while the resource stays
    reg.remove("s", no_users)
    reg.add("s", "b/s.txt", new_id)  # the same name again, another file: another analyzer
    assert bm25.text_analyzer(field).tokens("alpha beta") == ["alpha"]
    multi = json.dumps({"by_field": "lang", "analyzers": {"default": json.loads(params)}})
    assert parse_multi_params(multi).analyzer("").tokens("alpha beta") == ["alpha"]
