"""Generated from proto/ by ``python -m vecdb.rpc.protogen``: do not edit."""
