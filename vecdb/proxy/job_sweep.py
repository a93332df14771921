"""The sweep that carries on the jobs whose runner ended (``vecdb.jobs``): bulk import, snapshot
restore and external refresh, run on a Milvus service of this server's roles, as the RPCs that
started them run them. Started by a standalone server (its first sweep takes over what its previous
run left) and by every cluster proxy (any of them may win a job); closed with the server."""

from __future__ import annotations

from vecdb.jobs import JobSweeper
from vecdb.proxy.base import Roles


def start_job_sweep(roles: Roles, interval: float | None = None) -> JobSweeper:
    from vecdb.proxy.milvus_service import MilvusService

    service = MilvusService(roles)
    kinds = [service.import_job_kind(), service.snapshots().restore_job_kind(), service.refresh_job_kind()]
    return JobSweeper(kinds, interval).start()
