"""Chroma 0.5/0.6 authorization actions and the roles chromactl maps onto them.

Every role includes tenant:get_tenant and db:get_database: Chroma's clients call
both when they connect, so a role without them cannot connect at all.
"""

from __future__ import annotations

ACTIONS = (
    "system:reset",
    "tenant:create_tenant",
    "tenant:get_tenant",
    "db:create_database",
    "db:get_database",
    "db:delete_database",
    "db:list_databases",
    "db:list_collections",
    "db:count_collections",
    "db:create_collection",
    "db:get_or_create_collection",
    "collection:get_collection",
    "collection:delete_collection",
    "collection:update_collection",
    "collection:add",
    "collection:delete",
    "collection:get",
    "collection:query",
    "collection:count",
    "collection:update",
    "collection:upsert",
)

_CONNECT = ("tenant:get_tenant", "db:get_database")

READER = _CONNECT + (
    "db:list_databases",
    "db:list_collections",
    "db:count_collections",
    "collection:get_collection",
    "collection:get",
    "collection:query",
    "collection:count",
)

# Writers create collections and change records; they cannot delete or rename
# collections, nor touch tenants, databases or the whole server.
WRITER = READER + (
    "db:create_collection",
    "db:get_or_create_collection",
    "collection:add",
    "collection:update",
    "collection:upsert",
    "collection:delete",
)

ADMIN = ACTIONS

# The internal user that `up` and `status` use to prove auth is enforced: it can
# connect and list collection names, nothing more.
PROBE_ROLE = "chromactl-probe"
PROBE = _CONNECT + ("db:list_collections",)

DEFAULT_ROLE = "reader"

BUILTIN_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ADMIN,
    "writer": WRITER,
    "reader": READER,
    PROBE_ROLE: PROBE,
}
