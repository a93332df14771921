"""Generate the internal services' Python modules (``vecdb/rpc/gen``) from ``proto/*.proto``.

    python -m vecdb.rpc.protogen           # rewrite vecdb/rpc/gen from proto/
    python -m vecdb.rpc.protogen --check   # exit 1 if vecdb/rpc/gen differs from what proto/ gives

The modules are committed (a server needs no code generator, only grpcio and protobuf);
tests/unit/test_rpc.py fails when they differ from what ``proto/`` generates. Needs grpcio-tools
(the ``test`` extra pins the version whose output is committed).

The files are compiled as ``vecdb/internal/<name>.proto`` (protoc's ``-I<virtual>=<dir>``): that is
their name in protobuf's process-wide descriptor pool, where pymilvus's stubs already hold
``common.proto``; a .proto imports another by that path. protoc writes
``from vecdb.internal import x_pb2`` for such an import; those lines become package-relative
(``from . import x_pb2``), so the modules import as ``vecdb.rpc.gen.x_pb2``.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
GEN_DIR = Path(__file__).resolve().parent / "gen"
_INIT = '"""Generated from proto/ by ``python -m vecdb.rpc.protogen``: do not edit."""\n'
_VIRTUAL = "vecdb/internal"
_ABSOLUTE_IMPORT = re.compile(r"^from vecdb\.internal import (\w+_pb2) as ", re.MULTILINE)


def generate(out: Path, proto_dir: Path = PROTO_DIR) -> list[str]:
    """Write the modules of every .proto in ``proto_dir`` into ``out``; returns the file names."""
    from grpc_tools import protoc  # the generator is needed only here, not to serve

    protos = sorted(f"{_VIRTUAL}/{p.name}" for p in proto_dir.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(protoc.__file__).parent / "_proto"
        rc = protoc.main(["grpc_tools.protoc", f"-I{_VIRTUAL}={proto_dir}", f"-I{include}", f"--python_out={tmp}",
                          f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos])
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc}) on {protos}")
        out.mkdir(parents=True, exist_ok=True)
        names = ["__init__.py"]
        (out / "__init__.py").write_text(_INIT)
        for f in sorted((Path(tmp) / _VIRTUAL).iterdir()):
            text = _ABSOLUTE_IMPORT.sub(r"from . import \1 as ", f.read_text())
            (out / f.name).write_text(text)
            names.append(f.name)
    return names


def differences(gen_dir: Path = GEN_DIR, proto_dir: Path = PROTO_DIR) -> list[str]:
    """The files of ``gen_dir`` that are missing, stale or extra next to a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, proto_dir)
        want = {p.name: p.read_text() for p in fresh.iterdir() if p.is_file()}
    have = {p.name: p.read_text() for p in gen_dir.iterdir() if p.is_file()} if gen_dir.is_dir() else {}
    return sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        diff = differences()
        if diff:
            print(f"vecdb/rpc/gen differs from proto/ in {diff}: run python -m vecdb.rpc.protogen", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for stale in GEN_DIR.glob("*"):
        if stale.is_file():
            stale.unlink()
    print("\n".join(generate(GEN_DIR)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
