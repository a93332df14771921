"""RPCs: file resources (Milvus 3.0: ``AddFileResource``, ``RemoveFileResource``, ``ListFileResources``), the
files analyzers read. Thin: the registry is ``vecdb.file_resources``, records in the metadata store every
proxy shares and the files' copies in the object store; a resource a collection's analyzer names (the
catalog's schemas) is not removed.
"""

from __future__ import annotations

from pymilvus.grpc_gen import milvus_pb2

from vecdb import file_resources
from vecdb.file_resources import FileResources
from vecdb.proxy import status
from vecdb.proxy.base import ServiceBase, rpc


class FileResourceRpcs(ServiceBase):
    def file_resources(self) -> FileResources:
        reg = getattr(self, "_file_resources", None)
        if reg is None:
            reg = FileResources(*self.stores())
            self._file_resources = reg
        current = file_resources.installed()
        if current is None or current.meta is not reg.meta:  # this process's analyzers read these stores
            file_resources.install(reg.meta, reg.objects)
        return reg

    def file_resource_users(self, name: str) -> list[str]:
        """The collections (``db.name``) whose analyzers name file resource ``name``."""
        catalog = self.r.catalog
        return [f"{db}.{info.name}" for db in catalog.list_databases() for info in catalog.list_collections(db)
                if name in file_resources.schema_resources(info.schema)]

    @rpc()
    def AddFileResource(self, request, context):
        self.file_resources().add(request.name, request.path, lambda: int(self.r.ids.allocate(1)))
        return status.success()

    @rpc()
    def RemoveFileResource(self, request, context):
        self.file_resources().remove(request.name, self.file_resource_users)
        return status.success()

    @rpc(milvus_pb2.ListFileResourcesResponse)
    def ListFileResources(self, request, context):
        return milvus_pb2.ListFileResourcesResponse(
            status=status.success(),
            resources=[milvus_pb2.FileResourceInfo(id=r.id, name=r.name, path=r.path)
                       for r in self.file_resources().entries()])
