"""Index types the benchmark knows, with Milvus parameters and their FAISS twins.

Each :class:`IndexSpec` names the Milvus ``index_type`` and build params, the one
search parameter that trades recall for speed (``ef`` for HNSW, ``nprobe`` for
IVF), its headline value and the sweep used for the QPS/recall plot. The FAISS
builders use the same parameters so the in-process and bare-servicer numbers
are for the same index Milvus and vecdb are asked to build. Only L2 and IP are
built here (the benchmark data is L2); FAISS distances are squared L2, as in
Milvus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class IndexSpec:
    name: str                     # Milvus index_type
    build_params: dict            # Milvus "params" at create_index
    search_key: str | None        # the knob swept in search params (None: FLAT)
    headline: int | None          # the knob's value for the headline numbers
    sweep: tuple = field(default=())

    def milvus_index_params(self, metric: str) -> dict:
        return {"index_type": self.name, "metric_type": metric, "params": dict(self.build_params)}

    def search_params(self, metric: str, value: int | None) -> dict:
        params = {} if self.search_key is None or value is None else {self.search_key: int(value)}
        return {"metric_type": metric, "params": params}

    def values(self) -> list:
        """Knob values to measure: the sweep (headline included), or [None] for FLAT."""
        if self.search_key is None:
            return [None]
        vals = sorted(set(self.sweep) | {self.headline})
        return vals


INDEXES: dict[str, IndexSpec] = {
    "HNSW": IndexSpec("HNSW", {"M": 16, "efConstruction": 200}, "ef", 64, (16, 32, 64, 128)),
    "FLAT": IndexSpec("FLAT", {}, None, None, ()),
    "IVF_FLAT": IndexSpec("IVF_FLAT", {"nlist": 1024}, "nprobe", 16, (4, 8, 16, 32)),
    "IVF_SQ8": IndexSpec("IVF_SQ8", {"nlist": 1024}, "nprobe", 16, (4, 8, 16, 32)),
}


def build_faiss(index_type: str, build_params: dict, metric: str, vectors: np.ndarray):
    """Build a FAISS index equal to what Milvus's knowhere builds for these params."""
    import faiss

    d = vectors.shape[1]
    fmetric = {"L2": faiss.METRIC_L2, "IP": faiss.METRIC_INNER_PRODUCT}[metric]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if index_type == "FLAT":
        index = faiss.IndexFlat(d, fmetric)
    elif index_type == "HNSW":
        index = faiss.IndexHNSWFlat(d, int(build_params.get("M", 16)), fmetric)
        index.hnsw.efConstruction = int(build_params.get("efConstruction", 200))
    elif index_type in ("IVF_FLAT", "IVF_SQ8"):
        nlist = int(build_params.get("nlist", 1024))
        quantizer = faiss.IndexFlat(d, fmetric)
        if index_type == "IVF_FLAT":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, fmetric)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, fmetric)
        index.train(vectors)
    else:
        raise ValueError(f"unsupported index type {index_type!r}")
    index.add(vectors)
    return index


def faiss_search_params(index_type: str, value: int | None):
    """Per-call FAISS SearchParameters for the knob (thread-safe, unlike setting
    ``efSearch``/``nprobe`` on a shared index); None for FLAT or no value."""
    import faiss

    if value is None:
        return None
    if index_type == "HNSW":
        return faiss.SearchParametersHNSW(efSearch=int(value))
    if index_type in ("IVF_FLAT", "IVF_SQ8"):
        return faiss.SearchParametersIVF(nprobe=int(value))
    return None
