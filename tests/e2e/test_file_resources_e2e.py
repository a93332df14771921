"""File resources (Milvus 3.0's add_file_resource / list_file_resources / remove_file_resource) through
pymilvus on every deployment: files put in the server's object store, registered, named by analyzers
(a synonym filter's ``synonyms_file``, a stop filter's ``stop_words_file``, a decompounder's
``word_list_file``), their effect on run_analyzer and BM25 search, removal refused while a collection uses
the resource and fine once it is dropped, and the refusals."""

from __future__ import annotations

import uuid

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException


@pytest.fixture(scope="module")
def objects(server, tmp_path_factory):
    """The server's object store, where the files go (as bulk import's tests put theirs)."""
    if hasattr(server, "objects"):  # a Standalone
        yield server.objects
        return
    from vecdb.config import StorageSettings
    from vecdb.storage.backends import open_objects

    store = open_objects(StorageSettings(**server.storage, data_dir=str(tmp_path_factory.mktemp("fr-objects"))))
    yield store
    store.close()


@pytest.fixture
def res(client):
    """A fresh resource name; removed after the test (its collections are dropped first by ``name``)."""
    names: list[str] = []

    def make() -> str:
        n = "fr_" + uuid.uuid4().hex[:10]
        names.append(n)
        return n

    yield make
    for n in names:
        try:
            client.remove_file_resource(n)
        except MilvusException:
            pass


def remote(resource: str, file_name: str) -> dict:
    return {"type": "remote", "resource_name": resource, "file_name": file_name}


def bm25_collection(client: MilvusClient, name: str, analyzer_params: dict) -> None:
    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True,
                     analyzer_params=analyzer_params)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    index = client.prepare_index_params()
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=index)


def tokens(client: MilvusClient, name: str, text: str) -> list[str]:
    return list(client.run_analyzer(text, collection_name=name, field_name="text").tokens)


def test_synonyms_and_stop_words_files_in_an_analyzer(client, res, name, objects):
    prefix = f"fr-{uuid.uuid4().hex[:8]}"
    objects.put(f"{prefix}/synonyms.txt", b"search, retrieval, lookup\nfast, quick => speedy\n")
    objects.put(f"{prefix}/stop_words.txt", b"the\nof\n")
    syn, stop = res(), res()
    client.add_file_resource(syn, f"{prefix}/synonyms.txt")
    client.add_file_resource(stop, f"{prefix}/stop_words.txt")
    client.add_file_resource(syn, f"{prefix}/synonyms.txt")  # again, the same: a no-op
    listed = {r.name: r for r in client.list_file_resources()}
    assert listed[syn].path == f"{prefix}/synonyms.txt" and listed[stop].path == f"{prefix}/stop_words.txt"

    bm25_collection(client, name, {"tokenizer": "standard", "filter": [
        "lowercase",
        {"type": "stop", "stop_words_file": remote(stop, "stop_words.txt")},
        {"type": "synonym", "synonyms_file": remote(syn, "synonyms.txt")}]})
    assert tokens(client, name, "The speed of Lookup") == ["speed", "search", "retrieval", "lookup"]
    client.insert(name, [{"id": 1, "text": "a fast search engine"}, {"id": 2, "text": "the history of rome"},
                         {"id": 3, "text": "retrieval of documents"}])
    client.load_collection(name)
    hits = client.search(name, ["lookup"], anns_field="sparse", limit=10, output_fields=["id"])[0]
    assert sorted(h["id"] for h in hits) == [1, 3]  # the synonyms match; "of" is no term
    assert [h["id"] for h in client.search(name, ["speedy"], anns_field="sparse", limit=10)[0]] == [1]
    assert client.search(name, ["the of"], anns_field="sparse", limit=10)[0] == []

    # in use: not removed (as Milvus), until the collection is dropped
    with pytest.raises(MilvusException, match="in use"):
        client.remove_file_resource(syn)
    assert syn in {r.name for r in client.list_file_resources()}
    client.drop_collection(name)
    client.remove_file_resource(syn)
    client.remove_file_resource(syn)  # a missing one: fine
    assert syn not in {r.name for r in client.list_file_resources()}


def test_decompounder_word_list_file(client, res, name, objects):
    key = f"fr-{uuid.uuid4().hex[:8]}/decompounder_dict.txt"
    objects.put(key, b"bank\nnote\nfire\nwork\n")
    words = res()
    client.add_file_resource(words, key)
    bm25_collection(client, name, {"tokenizer": "standard", "filter": [
        {"type": "decompounder", "word_list_file": remote(words, "decompounder_dict.txt")}]})
    assert tokens(client, name, "banknote firework") == ["bank", "note", "fire", "work"]


def test_refusals(client, res, name, objects):
    key = f"fr-{uuid.uuid4().hex[:8]}/words.txt"
    objects.put(key, b"x\n")
    other = f"fr-{uuid.uuid4().hex[:8]}/other.txt"
    objects.put(other, b"y\n")
    r = res()
    with pytest.raises(MilvusException, match="not exist"):
        client.add_file_resource(r, "fr-nowhere/nothing.txt")
    with pytest.raises(MilvusException, match="name should not be empty") as e:
        client.add_file_resource("", key)
    assert e.value.code == 1100
    client.add_file_resource(r, key)
    with pytest.raises(MilvusException, match="already exists with another path"):
        client.add_file_resource(r, other)
    base = {"tokenizer": "standard"}
    for spec, words in [
        (remote("fr_never_added", "words.txt"), "not found"),
        (remote(r, "other.txt"), "not found in file resource"),
        ({"type": "remote", "file_name": "words.txt"}, "resource name of remote file"),
        ({"type": "unknown", "resource_name": r, "file_name": "words.txt"}, "unsupported file type"),
    ]:
        with pytest.raises(MilvusException, match=words) as e:
            bm25_collection(client, name, {**base, "filter": [{"type": "stop", "stop_words_file": spec}]})
        assert e.value.code == 1100
        assert not client.has_collection(name)
    with pytest.raises(MilvusException, match="not found"):
        client.run_analyzer("x", analyzer_params={**base, "filter": [
            {"type": "stop", "stop_words_file": remote("fr_never_added", "words.txt")}]})
