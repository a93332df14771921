"""pymilvus's gRPC stubs (``pymilvus.grpc_gen``) without its client, loaded when ``vecdb`` is imported.

The servers are built on the gRPC stubs that ship with pymilvus. Importing ``pymilvus`` itself runs
its client package, which pulls in pandas and
more: about 45 MiB of resident memory a server never uses. So, unless the client
is already imported (tests run both in one process), the stubs are loaded under a
bare placeholder package that is removed again afterwards; a later ``import
pymilvus`` then runs the real package, which finds its stubs already loaded. Done in
``vecdb/__init__.py``, so that every module's ``from pymilvus.grpc_gen import ...`` finds the stubs
whatever is imported first (a standalone server that imported the CDC before the proxy pulled in
pandas and pyarrow: 84 MiB more resident at start).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def load_stubs_without_client() -> None:
    if "pymilvus" in sys.modules:
        return
    spec = importlib.util.find_spec("pymilvus")
    if spec is None or not spec.submodule_search_locations:
        return
    placeholder = types.ModuleType("pymilvus")
    placeholder.__path__ = list(spec.submodule_search_locations)
    sys.modules["pymilvus"] = placeholder
    try:
        importlib.import_module("pymilvus.grpc_gen")
    finally:
        if sys.modules.get("pymilvus") is placeholder:
            del sys.modules["pymilvus"]
