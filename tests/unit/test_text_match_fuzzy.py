"""text_match_fuzzy(field, 'words', max_edit_distance=K): parsing and refusals (Milvus's 1100 and its
messages' key phrases), the vectorised OSA distance against a brute-force one (transpositions one
edit, Unicode code points, not bytes), K 0/1/2 on VARCHAR and TEXT, nullable and empty rows, the
per-column vocabulary cache over a growing prefix."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pymilvus.grpc_gen import schema_pb2

from vecdb.errors import InvalidParameter
from vecdb.expr import compile_filter
from vecdb.schema import CollectionSchema, DataType, valid_key
from vecdb.text_fuzzy import Vocabulary, code_points, osa_distances, vocabulary, within


def osa(a: str, b: str) -> int:
    """Optimal string alignment distance, the textbook full matrix (the reference)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def within_ref(terms: list[str], token: str, k: int) -> set[str]:
    return {t for t in terms if osa(token, t) <= k}


def within_vec(terms: list[str], token: str, k: int) -> set[str]:
    return {terms[i] for i in within(Vocabulary(terms), token, k).tolist()}


# ---------------------------------------------------------------- distances
@pytest.mark.parametrize("a,b,d", [
    ("milvus", "milvus", 0), ("milvus", "milvuz", 1), ("milvus", "miluvs", 1),  # transposition: one edit
    ("ab", "ba", 1), ("ca", "abc", 3),  # OSA, not unrestricted Damerau (2)
    ("alergy", "allergy", 1), ("alergy", "allergic", 3), ("musc", "music", 1), ("muisc", "music", 1),
    ("fotbal", "football", 2), ("mupic", "music", 1), ("", "ab", 2),
    ("cafe", "café", 1),  # one code point, two UTF-8 bytes
    ("日本語", "日本", 1), ("日本語", "本日語", 1), ("😀a", "a😀", 1), ("😀", "😁", 1),
])
def test_distance_known_pairs(a, b, d):
    assert osa(a, b) == d
    terms = [b]
    for k in range(3):
        assert within_vec(terms, a, k) == ({b} if d <= k else set()), (a, b, k)


def test_distance_matches_brute_force_on_random_words():
    rng = random.Random(7)
    alphabet = "abcé日😀"
    terms = list(dict.fromkeys("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
                               for _ in range(600)))
    for _ in range(60):
        token = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        for k in range(3):
            assert within_vec(terms, token, k) == within_ref(terms, token, k), (token, k)


def test_osa_distances_capped_at_k_plus_one():
    terms = ["abcd", "abdc", "xyzw", "ab"]
    width = max(map(len, terms))
    mat = np.full((len(terms), width), -1, np.int32)
    for i, t in enumerate(terms):
        mat[i, :len(t)] = code_points(t)
    got = osa_distances(code_points("abcd"), mat, np.array([len(t) for t in terms]), 2)
    assert got.tolist() == [0, 1, 3, 2]


def test_whole_term_not_prefix():
    # tantivy's FuzzyTermQuery::new (not new_prefix): "allergy" is not within 1 of "allergyseason"
    assert within_vec(["allergyseason", "allergy"], "alergy", 2) == {"allergy"}


# ---------------------------------------------------------------- filters over a schema
def _field(name, dt=DataType.VARCHAR, nullable=False, **params) -> schema_pb2.FieldSchema:
    f = schema_pb2.FieldSchema(name=name, data_type=int(dt), nullable=nullable)
    if dt == DataType.VARCHAR:
        f.type_params.add(key="max_length", value="512")
    for k, v in params.items():
        f.type_params.add(key=k, value=str(v))
    return f


def _schema() -> CollectionSchema:
    pb = schema_pb2.CollectionSchema(name="c")
    pb.fields.add(name="id", data_type=int(DataType.INT64), is_primary_key=True)
    pb.fields.add(name="v", data_type=DataType.FLOAT_VECTOR).type_params.add(key="dim", value="2")
    for f in (_field("text", enable_analyzer="true", enable_match="true",
                     analyzer_params='{"tokenizer": "standard"}'),
              _field("plain", enable_analyzer="true"),
              _field("note", nullable=True, enable_analyzer="true", enable_match="true"),
              _field("body", DataType.TEXT, enable_analyzer="true", enable_match="true"),
              _field("max_edit_distance", DataType.INT64)):
        pb.fields.add().CopyFrom(f)
    return CollectionSchema.from_proto(pb, "c")


TEXTS = ["allergy season", "allergic reaction", "apple juice", "football game", "music focus work",
         "coffee paper smell", "vector database search"]
NOTES = ["allergy season", "allergy archive", None, "", "apple juice", "music focus", "café Möller"]
DISTANCES = [5, 1, 2, 3, 0, 4, 6]


def _columns(n: int = len(TEXTS)) -> dict[str, np.ndarray]:
    def obj(values):
        col = np.empty(len(values), object)
        col[:] = values
        return col

    return {"id": np.arange(n, dtype=np.int64), "text": obj(TEXTS[:n]), "plain": obj(TEXTS[:n]),
            "note": obj([x or "" for x in NOTES[:n]]), valid_key("note"): np.array([x is not None for x in NOTES[:n]]),
            "body": obj(TEXTS[:n]), "max_edit_distance": np.array(DISTANCES[:n], np.int64)}


def ids(expr: str, **templates) -> set[int]:
    flt = compile_filter(expr, _schema(), templates or None)
    return {int(i) for i in np.flatnonzero(flt.evaluate(_columns(), len(TEXTS)))}


@pytest.mark.parametrize("expr,expected", [  # the cases of Milvus's client test (PR #51251)
    ('text_match(text, "musc")', set()),
    ('text_match_fuzzy(text, "musc", max_edit_distance=1)', {4}),
    ('text_match_fuzzy(text, "musicx", max_edit_distance=1)', {4}),
    ('text_match_fuzzy(text, "mupic", max_edit_distance=1)', {4}),
    ('text_match_fuzzy(text, "musc", max_edit_distance=0)', set()),
    ('text_match_fuzzy(text, "music", max_edit_distance=0)', {4}),
    ('text_match_fuzzy(text, "fotbal", max_edit_distance=1)', set()),
    ('text_match_fuzzy(text, "fotbal", max_edit_distance=2)', {3}),
    ('text_match_fuzzy(text, "muisc", max_edit_distance=1)', {4}),
    ('text_match_fuzzy(text, "alergy aple", max_edit_distance=1)', {0, 2}),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=2)', {0}),  # allergic: 3 edits
    ('text_match_fuzzy(text, "", max_edit_distance=1)', set()),
    ('text_match_fuzzy(text, "...", max_edit_distance=1)', set()),
    ('not text_match_fuzzy(text, "alergy", max_edit_distance=1)', {1, 2, 3, 4, 5, 6}),
    ('text_match_fuzzy(text, "alergy aple", max_edit_distance=1) '
     'and not text_match_fuzzy(text, "alergy", max_edit_distance=1)', {2}),
    ('TEXT_MATCH_FUZZY(text, "alergy", MAX_EDIT_DISTANCE = 1)', {0}),  # the option's name: any case
    ('text_match_fuzzy(text, "alergy", max_edit_distance=+1)', {0}),
    ("max_edit_distance > 1", {0, 2, 3, 5, 6}),  # a soft keyword: a field may be named so
    ('max_edit_distance > 1 and text_match_fuzzy(text, "aple musc", max_edit_distance=1)', {2}),
    ('text_match_fuzzy(body, "databse", max_edit_distance=1)', {6}),  # TEXT
    ('text_match_fuzzy(note, "alergy", max_edit_distance=1)', {0, 1}),
    ('text_match_fuzzy(note, "alergy", max_edit_distance=1) or text_match_fuzzy(note, "aple", max_edit_distance=1)',
     {0, 1, 4}),
    ('not text_match_fuzzy(note, "alergy", max_edit_distance=1)', {3, 4, 5, 6}),  # null row 2: neither
    ('text_match_fuzzy(note, "cafe", max_edit_distance=1)', {6}),  # é: one code point
    ('text_match_fuzzy(note, "MOLLER", max_edit_distance=1)', {6}),  # lowercased: möller, one edit
])
def test_filter(expr, expected):
    assert ids(expr) == expected


def test_template_query():
    assert ids("text_match_fuzzy(text, {q}, max_edit_distance=1)", q="alergy") == {0}
    assert ids("text_match_fuzzy(text, {q}, max_edit_distance=2) and id in {pks}", q="fotbal", pks=[3, 4]) == {3}


def test_agrees_with_brute_force():
    from vecdb.bm25 import text_analyzer

    schema = _schema()
    analyzer = text_analyzer(schema.field("text"))
    rows = [analyzer.tokens(t) for t in TEXTS]
    for query in ["alergy", "aple juise", "fotbal", "vectr serch", "kofee", "gmae", "xyz"]:
        q = analyzer.tokens(query)
        for k in range(3):
            want = {i for i, toks in enumerate(rows) if any(osa(a, b) <= k for a in q for b in toks)}
            assert ids(f"text_match_fuzzy(text, '{query}', max_edit_distance={k})") == want, (query, k)


def test_growing_prefix_reuses_and_extends_the_vocabulary():
    from vecdb.bm25 import text_analyzer

    base = np.empty(len(TEXTS), object)
    base[:] = TEXTS
    analyzer = text_analyzer(_schema().field("text"))
    assert "music" not in vocabulary(base[:3], analyzer).terms
    assert "music" in vocabulary(base[:5], analyzer).terms  # the longer prefix: its new rows analyzed
    flt = compile_filter('text_match_fuzzy(text, "musc", max_edit_distance=1)', _schema())
    cols = _columns()
    cols["text"] = base
    for n in (3, 5, 7):
        view = {k: v[:n] for k, v in cols.items()}
        assert np.flatnonzero(flt.evaluate(view, n)).tolist() == ([] if n < 5 else [4])


# ---------------------------------------------------------------- refusals (1100)
@pytest.mark.parametrize("expr,phrase", [
    ('text_match_fuzzy(text, "alergy", fuzziness=1)', "expected max_edit_distance"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=-1)', r"max_edit_distance should be in \[0, 2\]"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=3)', r"max_edit_distance should be in \[0, 2\]"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=1.5)', "expecting IntegerConstant"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=true)', "expecting IntegerConstant"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=id)', "expecting IntegerConstant"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance={k})', "expecting IntegerConstant"),
    ('text_match_fuzzy(text, "alergy", max_edit_distance=9223372036854775808)', "out of int64 range"),
    ('text_match_fuzzy(text, "alergy")', "expecting ','"),
    ('text_match_fuzzy(text)', "expecting ','"),
    ('text_match_fuzzy(text, "alergy", 1)', "expected max_edit_distance"),
    ('text_match_fuzzy(text, "a", max_edit_distance=1, max_edit_distance=1)', "expecting ','"),
    ('text_match_fuzzy(text, 123, max_edit_distance=1)',
     "text_match_fuzzy query should be a string literal or template variable"),
    ('text_match_fuzzy(not_exist, "alergy", max_edit_distance=1)', "not_exist"),
    ('text_match_fuzzy(max_edit_distance, "alergy", max_edit_distance=1)', "non-string"),
    ('text_match_fuzzy(plain, "alergy", max_edit_distance=1)', "does not enable match"),
])
def test_refused(expr, phrase):
    with pytest.raises(InvalidParameter, match=phrase) as e:
        compile_filter(expr, _schema(), {"k": 1})
    assert e.value.code == 1100


def test_refused_non_string_template():
    with pytest.raises(InvalidParameter, match="string literal or template variable") as e:
        compile_filter("text_match_fuzzy(text, {q}, max_edit_distance=1)", _schema(), {"q": 123})
    assert e.value.code == 1100


def test_grown_vocabulary_equals_a_fresh_one():
    parts = [["café", "apple"], ["apple", "日本", "😀x"], [], ["zz", "café", "music"]]
    v = Vocabulary([])
    for p in parts:
        v = v.grown(p)
    fresh = Vocabulary(list(dict.fromkeys(t for p in parts for t in p)))
    assert v.terms == fresh.terms
    for attr in ("codes", "starts", "lengths"):
        assert getattr(v, attr).tolist() == getattr(fresh, attr).tolist(), attr
    assert within_vec(v.terms, "musci", 1) == {"music"} and {v.terms[i] for i in within(v, "cafe", 1)} == {"café"}
