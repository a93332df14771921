"""text_match_fuzzy(field, 'words', max_edit_distance=K) (Milvus 3.0) through pymilvus on every
deployment: query, search and delete filters, templates, combined with other expressions, on sealed
(flushed) and growing rows, a nullable field with null and empty rows, checked against a brute-force
reference (the optimal string alignment distance over the standard analyzer's lowercased words: any
query word within K edits of any of a row's words), and the refusals (1100, Milvus's messages)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

WORDS = ("allergy allergic apple juice football game music focus coffee paper smell vector database search "
         "season reaction café möller naïve résumé kilo lima mike oscar").split()


def _osa(a: str, b: str) -> int:
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


def _words(text: str | None) -> set[str]:
    return set(re.findall(r"[^\W_]+", (text or "").lower()))


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(1, 5))))
        if i % 5 == 0:  # a typo of a word in the text itself: the vocabulary holds near neighbours
            w = words[0]
            j = int(rng.integers(0, len(w)))
            words.append(w[:j] + w[j + 1:] if len(w) > 3 else w + "x")
        out.append(" ".join(str(w).upper() if i % 7 == 0 else str(w) for w in words))
    return out


def _code(fn, *args, **kw) -> tuple[int, str]:
    with pytest.raises(MilvusException) as e:
        fn(*args, **kw)
    return e.value.code, e.value.message


def _ids(client, name, flt: str, **kw) -> set[int]:
    got = client.query(name, filter=flt, output_fields=["id"], limit=1000, consistency_level="Strong", **kw)
    return {r["id"] for r in got}


def test_text_match_fuzzy_query_search_delete(client, name):
    schema = MilvusClient.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=2000, enable_analyzer=True, enable_match=True)
    schema.add_field("note", DataType.VARCHAR, max_length=2000, enable_analyzer=True, enable_match=True,
                     nullable=True)
    schema.add_field("max_edit_distance", DataType.INT64)  # the option's name, a soft keyword
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=4)
    client.create_collection(name, schema=schema)
    idx = client.prepare_index_params()
    idx.add_index("dense", index_type="FLAT", metric_type="L2")
    client.create_index(name, idx)
    client.load_collection(name)
    texts = _texts(240, 11)
    notes: list[str | None] = [None if i % 4 == 0 else "" if i % 4 == 1 else t for i, t in enumerate(texts)]
    rng = np.random.default_rng(3)

    def rows(lo, hi):
        return [{"id": i, "text": texts[i], "note": notes[i], "max_edit_distance": i % 3,
                 "dense": rng.random(4).tolist()} for i in range(lo, hi)]

    client.insert(name, rows(0, 120))
    client.flush(name)
    client.insert(name, rows(120, 240))  # sealed and growing rows
    live = set(range(240))

    def ref(col: list[str | None], query: str, k: int) -> set[int]:
        q = _words(query)
        return {i for i in live if any(_osa(a, b) <= k for a in q for b in _words(col[i]))}

    cases = [("alergy", 1), ("alergy", 2), ("aple juise", 1), ("fotbal", 2), ("fotbal", 1), ("muisc", 1),
             ("MUSC", 1), ("cafe", 1), ("moller", 1), ("naive resume", 1), ("databse serch", 2), ("kilo", 0),
             ("klio", 1), ("xyzzy", 2), ("", 1), ("...", 2)]
    for query, k in cases:
        want = ref(texts, query, k)
        assert _ids(client, name, f"text_match_fuzzy(text, '{query}', max_edit_distance={k})") == want, (query, k)
        assert _ids(client, name, f"text_match_fuzzy(note, '{query}', max_edit_distance={k})") \
            == ref(notes, query, k), (query, k)
    assert ref(texts, "alergy", 1) and ref(texts, "fotbal", 2) - ref(texts, "fotbal", 1)

    # K = 0 is text_match; templates; combined with other expressions; not; the soft keyword
    assert _ids(client, name, "text_match_fuzzy(text, 'music lima', max_edit_distance=0)") \
        == _ids(client, name, "text_match(text, 'music lima')")
    assert _ids(client, name, "text_match_fuzzy(text, {q}, max_edit_distance=1)", filter_params={"q": "alergy"}) \
        == ref(texts, "alergy", 1)
    assert _ids(client, name, "max_edit_distance == 2 and TEXT_MATCH_FUZZY(text, 'aple', MAX_EDIT_DISTANCE=1)") \
        == {i for i in ref(texts, "aple", 1) if i % 3 == 2}
    assert _ids(client, name, "not text_match_fuzzy(note, 'aple', max_edit_distance=1) and id < 240") \
        == {i for i in live if notes[i] is not None} - ref(notes, "aple", 1)  # null rows: neither

    # search filters, a literal and a template
    for flt, params, want in [("text_match_fuzzy(text, 'muisc', max_edit_distance=1)", {}, ref(texts, "muisc", 1)),
                              ("text_match_fuzzy(text, {q}, max_edit_distance=2) and id >= 60",
                               {"q": "fotbal"}, {i for i in ref(texts, "fotbal", 2) if i >= 60})]:
        hits = client.search(name, [[0.5] * 4], anns_field="dense", limit=300, filter=flt, filter_params=params,
                             search_params={"metric_type": "L2"}, consistency_level="Strong")[0]
        assert {h["id"] for h in hits} == want and want, flt

    # delete by a fuzzy filter
    gone = ref(texts, "cofee", 1)
    assert gone
    client.delete(name, filter="text_match_fuzzy(text, 'cofee', max_edit_distance=1)")
    live -= gone
    assert _ids(client, name, "id >= 0") == live
    assert _ids(client, name, "text_match_fuzzy(text, 'alergy aple', max_edit_distance=1)") \
        == ref(texts, "alergy aple", 1)

    # refusals: 1100 and Milvus's messages
    out_of_range = "max_edit_distance should be in [0, 2]"
    for flt, phrase in [("text_match_fuzzy(text, 'alergy', fuzziness=1)", "expected max_edit_distance"),
                        ("text_match_fuzzy(text, 'alergy', max_edit_distance=3)", out_of_range),
                        ("text_match_fuzzy(text, 'alergy', max_edit_distance=-1)", out_of_range),
                        ("text_match_fuzzy(text, 'alergy', max_edit_distance=1.5)", "expecting IntegerConstant"),
                        ("text_match_fuzzy(text, 'alergy')", "expecting ','"),
                        ("text_match_fuzzy(text, 123, max_edit_distance=1)",
                         "text_match_fuzzy query should be a string literal or template variable"),
                        ("text_match_fuzzy(max_edit_distance, 'alergy', max_edit_distance=1)", "non-string"),
                        ("text_match_fuzzy(not_exist, 'alergy', max_edit_distance=1)", "not_exist")]:
        code, msg = _code(client.query, name, filter=flt, limit=3)
        assert code == 1100 and phrase in msg, (flt, msg)
