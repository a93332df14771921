"""The MinHash function (vecdb.minhash_function, Milvus 3.0): signatures equal to Milvus's (values printed by
Milvus's C++ pipeline, MinHashComputer.cpp, compiled against xxhash.h and OpenSSL), their properties, the
params and the schema checks, and the insert / search paths that fill and read the output field."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus.grpc_gen import common_pb2, schema_pb2

from vecdb.analyzer import parse_params
from vecdb.errors import InvalidParameter
from vecdb.minhash_function import (
    MinHashSpec,
    binary_rows,
    output_encoder,
    parse_spec,
    permutations,
    signatures,
)
from vecdb.proxy.fielddata import columns_from_field_data, parse_placeholder_group
from vecdb.schema import CollectionSchema, DataType, FunctionType
from vecdb.xxh3 import xxh3_64

STANDARD = parse_params("")


def _sig(text: str, **kw) -> str:
    spec = MinHashSpec(**{"num_hashes": 4, **kw})
    return " ".join(f"{v:08x}" for v in signatures([text], spec, STANDARD)[0])


# --- equal to Milvus's ----------------------------------------------------------------------------
@pytest.mark.parametrize("data, want", [
    (b"", 0x2D06800538D394C2), (b"a", 0xE6C632B61E964E1F), (b"abcdefg", 0x5A40DC3FD44C052F),
    (b"abcdefghijklmno", 0xA8EDAF6DC2724D85), (b"0123456789" * 10, 0x2B476D154B2D122C),
    (b"0123456789" * 20, 0xAFADBA07E1698882), (b"0123456789" * 100, 0xDBDF770360DA5AC5),
])
def test_xxh3_64_equals_the_reference_in_every_length_class(data, want):
    buf = np.frombuffer(b"pad" + data, np.uint8)
    assert int(xxh3_64(buf, [3], [len(data)])[0]) == want


def test_signatures_equal_milvus_s():
    assert _sig("milvus is vector db", char_level=True) == "26bf06f7 2aaf7616 0878d2d8 11d841f2"
    assert _sig("milvus is vector db", char_level=True, shingle_size=2, seed=7,
                hash_function="sha1") == "030edc31 045a2951 225f7eba 0853279a"
    # word level: the standard analyzer's tokens, 3 at a time, concatenated
    assert _sig("Information retrieval is a field") == "0b9f2607 8e84cb7c 6290729f 3786fffd"


def test_permutations_are_std_mt19937_64_through_uniform_int_distribution():
    a, b = permutations(3, 1234)
    assert a.dtype == b.dtype == np.uint64
    assert ((a >= 2) & (a <= 1 << 32)).all() and (b >= 1).all() and (b < 1 << 32).all()
    assert permutations(3, 1234)[0] is a  # cached
    assert not np.array_equal(permutations(3, 1235)[0], a)


# --- properties -------------------------------------------------------------------------------------
def test_equal_texts_equal_signatures_and_a_batch_changes_nothing():
    texts = ["the quick brown fox", "", "a b", "the quick brown fox", "x" * 500, "jumps over the lazy dog"]
    for char in (False, True):
        spec = MinHashSpec(num_hashes=8, char_level=char)
        together = signatures(texts, spec, STANDARD)
        alone = np.vstack([signatures([t], spec, STANDARD) for t in texts])
        assert np.array_equal(together, alone)
        assert np.array_equal(together[0], together[3])
        assert (together[1] == 0xFFFFFFFF).all()  # no shingle: every value the maximum, as Milvus


def test_binary_rows_pack_the_values_little_endian():
    spec = MinHashSpec(num_hashes=5)
    rows = binary_rows(["hello big world", "other words here"], spec, STANDARD)
    assert rows.shape == (2, 20) and rows.dtype == np.uint8
    assert np.array_equal(rows.view("<u4"), signatures(["hello big world", "other words here"], spec, STANDARD))


def _word_shingles(text: str, k: int) -> set[str]:
    toks = STANDARD.tokens(text)
    return {"".join(toks[i:i + k]) for i in range(max(len(toks) - k + 1, 1))} if toks else set()


def test_share_of_equal_values_estimates_the_shingles_jaccard():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(60)]
    base = [" ".join(rng.choice(vocab, 80)) for _ in range(12)]
    others = []
    for t in base:  # edit a random share of the words
        words = t.split()
        at = rng.choice(len(words), int(rng.integers(5, 60)), replace=False)
        for i in at:
            words[i] = "z" + words[i]
        others.append(" ".join(words))
    spec = MinHashSpec(num_hashes=256, shingle_size=2)
    sa, sb = signatures(base, spec, STANDARD), signatures(others, spec, STANDARD)
    for t, o, x, y in zip(base, others, sa, sb):
        a, b = _word_shingles(t, 2), _word_shingles(o, 2)
        true = len(a & b) / len(a | b)
        assert abs(float(np.mean(x == y)) - true) < 0.12  # sd <= 0.032 for 256 values


def test_word_level_goes_through_the_analyzer_char_level_through_the_bytes():
    assert _sig("Hello World again") == _sig("hello, world! AGAIN")  # standard: lowercased, punctuation out
    assert _sig("Hello World", char_level=True, num_hashes=64) != _sig("hello world", char_level=True, num_hashes=64)
    stop = parse_params({"tokenizer": "standard", "filter": [{"type": "stop", "stop_words": ["the"]}]})
    spec = MinHashSpec(num_hashes=4)
    assert np.array_equal(signatures(["the cat sat on mat"], spec, stop), signatures(["cat sat on mat"], spec, stop))
    # fewer tokens (bytes) than a shingle: one shingle of them all
    assert _sig("ab", char_level=True) != _sig("ba", char_level=True)
    assert _sig("one two") == _sig("onetwo", shingle_size=1)


# --- params ----------------------------------------------------------------------------------------
def test_params_defaults_and_spellings():
    assert parse_spec({}, "sig", 128) == MinHashSpec(num_hashes=4, shingle_size=3, hash_function="xxhash64",
                                                     char_level=False, seed=1234)
    spec = parse_spec({"NUM_HASHES": "2", "Shingle_Size": "+5", "hash_function": "XXHASH", "token_level": "Character",
                       "seed": "-3", "unknown": "ignored"}, "sig", 64)
    assert spec == MinHashSpec(num_hashes=2, shingle_size=5, hash_function="xxhash64", char_level=True, seed=-3)
    assert parse_spec({"hash_function": "sha1"}, "sig", 32).hash_function == "sha1"


@pytest.mark.parametrize("params, dim, words", [
    ({"num_hashes": "4"}, 256, "minhash function output field 'sig' dim 256 does not match expected dim 128 "
                               "(numHashes 4 * one minhash signature size of 32bit)"),
    ({}, 72, "minhash function output field 'sig' dim 72 is not multiple of 32 (one minhash signature size)"),
    ({"num_hashes": "x"}, 128, "param num_hashes:x is not a number"),
    ({"num_hashes": "0"}, 128, "param num_hashes:0 must be positive"),
    ({"shingle_size": "-1"}, 128, "param shingle_size:-1 must be positive"),
    ({"shingle_size": "1.5"}, 128, "param shingle_size:1.5 is not a number"),
    ({"hash_function": "md5"}, 128, "unknown hash function: md5 (expected 'xxhash64' or 'sha1')"),
    ({"token_level": "line"}, 128, "unknown token_level: line (expected 'char' or 'word')"),
    ({"seed": "abc"}, 128, "param seed:abc is not a number"),
])
def test_bad_params_are_refused_as_milvus_does(params, dim, words):
    with pytest.raises(InvalidParameter) as e:
        parse_spec(params, "sig", dim)
    assert e.value.code == 1100 and str(e.value) == words


# --- the schema ---------------------------------------------------------------------------------------
def _pb(dim=128, params=None, text_type=DataType.VARCHAR, out_type=DataType.BINARY_VECTOR, analyzer=None):
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=DataType.INT64, is_primary_key=True)
    text = pb.fields.add(name="text", data_type=text_type)
    if text_type == DataType.VARCHAR:
        text.type_params.add(key="max_length", value="1000")
    if analyzer is not None:
        text.type_params.add(key="analyzer_params", value=analyzer)
    out = pb.fields.add(name="sig", data_type=out_type)
    if out_type != DataType.SPARSE_FLOAT_VECTOR:
        out.type_params.add(key="dim", value=str(dim))
    fn = pb.functions.add(name="mh", type=4, input_field_names=["text"], output_field_names=["sig"])
    for k, v in (params or {}).items():
        fn.params.add(key=k, value=v)
    return pb


def test_minhash_function_is_taken_and_round_trips():
    schema = CollectionSchema.from_proto(_pb(params={"num_hashes": "4", "shingle_size": "2"}), "c")
    (fn,) = schema.functions
    assert (fn.type, fn.params) == (FunctionType.MINHASH, {"num_hashes": "4", "shingle_size": "2"})
    assert schema.field("sig").is_function_output and not schema.field("text").enable_analyzer
    assert schema.minhash_function_of("sig") is fn and schema.bm25_function_of("sig") is None
    assert CollectionSchema.from_dict(schema.to_dict()) == schema
    out = schema_pb2.CollectionSchema()
    schema.to_proto(out)
    assert out.functions[0].type == 4 and {kv.key: kv.value for kv in out.functions[0].params} == fn.params
    assert CollectionSchema.from_proto(out, "c") == schema


@pytest.mark.parametrize("kw, words", [
    ({"text_type": DataType.INT64}, "MinHash function input field must be a VARCHAR/TEXT field, got 1 field with "
                                    "type Int64"),
    ({"out_type": DataType.FLOAT_VECTOR}, "MinHash function output field must be a BinaryVector field, but got "
                                          "FloatVector"),
    ({"dim": 256, "params": {"num_hashes": "4"}}, "dim 256 does not match expected dim 128"),
    ({"dim": 72}, "dim 72 is not multiple of 32"),
    ({"params": {"token_level": "x"}}, "unknown token_level: x"),
    ({"analyzer": '{"type": "japanese"}'}, "analyzer type 'japanese'"),
])
def test_minhash_function_is_checked_as_milvus_does(kw, words):
    with pytest.raises(InvalidParameter) as e:
        CollectionSchema.from_proto(_pb(**kw), "c")
    assert e.value.code == 1100 and words in str(e.value)


# --- insert and search -------------------------------------------------------------------------------
def _insert(schema, texts, with_sig=False):
    fds = [schema_pb2.FieldData(field_name="id", type=DataType.INT64,
                                scalars=schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=range(len(texts))))),
           schema_pb2.FieldData(field_name="text", type=DataType.VARCHAR,
                                scalars=schema_pb2.ScalarField(string_data=schema_pb2.StringArray(data=texts)))]
    if with_sig:
        fds.append(schema_pb2.FieldData(field_name="sig", type=DataType.BINARY_VECTOR, vectors=schema_pb2.VectorField(
            dim=128, binary_vector=bytes(16 * len(texts)))))
    return columns_from_field_data(schema, fds, len(texts))


def test_insert_fills_the_output_and_refuses_it_from_the_client():
    schema = CollectionSchema.from_proto(_pb(params={"token_level": "char"}), "c")
    cols = _insert(schema, ["some text", "more text"])
    spec = MinHashSpec(num_hashes=4, char_level=True)
    assert np.array_equal(cols["sig"], binary_rows(["some text", "more text"], spec))
    with pytest.raises(InvalidParameter, match="not support manually specifying the function output field sig"):
        _insert(schema, ["x"], with_sig=True)


def test_search_text_on_the_output_becomes_its_signature():
    schema = CollectionSchema.from_proto(_pb(analyzer='{"tokenizer": "whitespace"}'), "c")
    enc = output_encoder(schema, "sig")
    assert enc is not None and output_encoder(schema, "text") is None
    group = common_pb2.PlaceholderGroup(placeholders=[common_pb2.PlaceholderValue(
        tag="$0", type=common_pb2.PlaceholderType.VarChar, values=[b"Some Text here", b"x"])])
    rows = parse_placeholder_group(group.SerializeToString(), schema.field("sig"), enc)
    whitespace = parse_params('{"tokenizer": "whitespace"}')
    assert np.array_equal(rows, binary_rows(["Some Text here", "x"], MinHashSpec(num_hashes=4), whitespace))
