"""``pk in [k1, k2, ...]`` (what pymilvus's get, query and delete by ids send) is read by one regex
(vecdb.expr.parser._plain_term) into the very tree the token parser builds; anything else the regex
does not take whole goes to the parser, which answers (or refuses) as before."""

import pytest

from vecdb.errors import InvalidParameter
from vecdb.expr import ast
from vecdb.expr.parser import _Parser, _plain_term, parse

TAKEN = ["id in [1, 2, 3]", "id not in [1,-2 ,0]", "s in ['a', \"b\", '']", "id IN [5]", "id NOT IN [5, 6]",
         "  id in [1]  ", "x in [123456789012345678]", "x in [1, 'a']", "x in [-0]", "ISO in [1]"]
LEFT = ["x in [007]", "x in [1.5]", "x in [1e3]", "x in []", "x in [1,]", "not in [1]", "true in [1]",
        "$meta in [1]", "x in [1234567890123456789]", "x in ['a\\'b']", "and in [1]", "x In [1]",
        "x in [\"a\nb\"]", "x in [1] and y", "x in [0x10]", "x in [r'a']", "x[\"k\"] in [1]", "x in [1] or"]


@pytest.mark.parametrize("expr", TAKEN)
def test_the_regex_builds_the_parsers_tree(expr):
    fast = _plain_term(expr)
    assert fast is not None and fast == _Parser(expr).parse()


@pytest.mark.parametrize("expr", LEFT)
def test_anything_else_goes_to_the_parser(expr):
    assert _plain_term(expr) is None
    try:
        want = _Parser(expr).parse()
    except InvalidParameter as e:
        with pytest.raises(InvalidParameter) as err:
            parse(expr)
        assert err.value.message == e.message
    else:
        assert parse(expr) == want


def test_ten_thousand_keys_keep_their_values_and_positions():
    keys = [i * 7 - 35000 for i in range(10000)]
    expr = "id in [" + ", ".join(map(str, keys)) + "]"
    tree = parse(expr)
    assert isinstance(tree, ast.In) and tree == _Parser(expr).parse()
    assert len(tree.items.items) == 10000
