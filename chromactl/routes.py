"""Chroma 1.x's HTTP API, each route classified by the Chroma 0.6 authorization action it
performs, so the gateway can enforce the same roles. A route with no action is refused
to everyone under RBAC. Checked against the server's own /openapi.json by the tests: a
route the table does not know fails them."""

from __future__ import annotations

# Any authenticated user, whatever the role (0.6 asked for no action here either).
AUTHENTICATED = "authenticated"

# Public even with auth on, as upstream has them.
PUBLIC_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/api/v2/heartbeat"),
    ("GET", "/api/v2/version"),
    ("GET", "/api/v2/healthcheck"),
    ("GET", "/api/v2/pre-flight-checks"),
)

_T = "/api/v2/tenants/{tenant}"
_D = _T + "/databases/{database}"
_C = _D + "/collections/{collection_id}"

# (method, path template, actions that allow it; empty: refused under RBAC)
ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("GET", "/api/v2/auth/identity", (AUTHENTICATED,)),
    ("POST", "/api/v2/reset", ("system:reset",)),
    ("POST", "/api/v2/tenants", ("tenant:create_tenant",)),
    ("GET", _T, ("tenant:get_tenant",)),
    ("PATCH", _T, ()),  # update_tenant: no 0.6 action
    ("GET", _T + "/databases", ("db:list_databases",)),
    ("POST", _T + "/databases", ("db:create_database",)),
    ("GET", _D, ("db:get_database",)),
    ("DELETE", _D, ("db:delete_database",)),
    ("GET", _D + "/collections", ("db:list_collections",)),
    # One route creates, or gets or creates (a flag in the body): either action allows it.
    ("POST", _D + "/collections", ("db:create_collection", "db:get_or_create_collection")),
    ("GET", _D + "/collections_count", ("db:count_collections",)),
    ("GET", "/api/v2/collections/{crn}", ("collection:get_collection",)),
    ("GET", _D + "/collections/by-id/{collection_id}", ("collection:get_collection",)),
    ("GET", _C, ("collection:get_collection",)),
    ("PUT", _C, ("collection:update_collection",)),
    ("DELETE", _C, ("collection:delete_collection",)),
    ("GET", _C + "/indexing_status", ("collection:get_collection",)),
    ("POST", _C + "/add", ("collection:add",)),
    ("GET", _C + "/count", ("collection:count",)),
    ("POST", _C + "/delete", ("collection:delete",)),
    ("POST", _C + "/get", ("collection:get",)),
    ("POST", _C + "/query", ("collection:query",)),
    ("POST", _C + "/search", ("collection:query",)),  # a query by another name
    ("POST", _C + "/update", ("collection:update",)),
    ("POST", _C + "/upsert", ("collection:upsert",)),
    # 1.x features with no 0.6 action: refused under RBAC.
    ("POST", _C + "/fork", ()),
    ("GET", _C + "/fork_count", ()),
    ("POST", _C + "/functions/attach", ()),
    ("GET", _C + "/functions/{function_name}", ()),
    ("POST", _C + "/attached_functions/{name}/detach", ()),
)


# What a tenant-scoped user (credentials.User.tenant) may reach by each route, decided from the
# path alone except for COLLECTION_ID. Measured on Chroma 1.5.9: routes that name a collection
# by its id act on that collection whatever tenant and database the path names; routes that
# name a collection by its name, and the by-id lookup, look only in the path's tenant and database.
SERVER = "server"  # no tenant in the path (reset, tenant creation): never for a scoped user
TENANT = "tenant"  # the path names a tenant: the user's own
TENANT_WIDE = "tenant-wide"  # the path names a tenant, and reaches all its databases: a user scoped to the whole tenant
DATABASE = "database"  # the path names a tenant and a database: one of the user's
COLLECTION_ID = "collection-id"  # as DATABASE, and the collection's id must belong to that tenant and database
CRN = "crn"  # tenant:database:name in one segment: one of the user's databases
IDENTITY = "identity"  # who the caller is: the gateway answers a scoped user itself

SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/api/v2/auth/identity"): IDENTITY,
    ("POST", "/api/v2/reset"): SERVER,
    ("POST", "/api/v2/tenants"): SERVER,
    ("GET", _T): TENANT,
    ("PATCH", _T): TENANT,
    # Listing or making databases reaches past a user's own: only a user of the whole tenant.
    ("GET", _T + "/databases"): TENANT_WIDE,
    ("POST", _T + "/databases"): TENANT_WIDE,
    ("GET", _D): DATABASE,
    ("DELETE", _D): TENANT_WIDE,
    ("GET", _D + "/collections"): DATABASE,
    ("POST", _D + "/collections"): DATABASE,
    ("GET", _D + "/collections_count"): DATABASE,
    ("GET", "/api/v2/collections/{crn}"): CRN,
    ("GET", _D + "/collections/by-id/{collection_id}"): DATABASE,  # Chroma looks in the path's database only
    ("GET", _C): DATABASE,  # by name
    ("DELETE", _C): DATABASE,  # by name
    ("PUT", _C): COLLECTION_ID,  # update_collection: by id
    **{(m, t): COLLECTION_ID for m, t, _ in ROUTES if t.startswith(_C + "/")},
}

# The name each route has in the audit trail: its Chroma action, or for routes without one
# the operation's own name.
_AUDIT_NAMES: dict[tuple[str, str], str] = {
    ("GET", "/api/v2/auth/identity"): "auth:identity",
    ("PATCH", _T): "tenant:update_tenant",
    ("POST", _C + "/search"): "collection:search",
    ("POST", _C + "/fork"): "collection:fork",
    ("GET", _C + "/fork_count"): "collection:fork_count",
    ("GET", _C + "/indexing_status"): "collection:indexing_status",
    ("POST", _C + "/functions/attach"): "collection:attach_function",
    ("GET", _C + "/functions/{function_name}"): "collection:get_attached_function",
    ("POST", _C + "/attached_functions/{name}/detach"): "collection:detach_function",
    ("GET", "/api/v2/heartbeat"): "system:heartbeat",
    ("GET", "/api/v2/version"): "system:version",
    ("GET", "/api/v2/healthcheck"): "system:healthcheck",
    ("GET", "/api/v2/pre-flight-checks"): "system:pre_flight_checks",
}
UNKNOWN_ACTION = "unknown"


def audit_actions() -> list[tuple[str, str, str]]:
    """(method, path template, name in the audit trail) for every route, public ones included."""
    named = [(m, t, _AUDIT_NAMES.get((m, t)) or actions[0]) for m, t, actions in ROUTES]
    return named + [(m, t, _AUDIT_NAMES[(m, t)]) for m, t in PUBLIC_ROUTES]


def classify(method: str, path: str) -> str:
    """'public', 'mapped', 'refused', or 'unknown' for a route of the OpenAPI document."""
    if (method, path) in PUBLIC_ROUTES:
        return "public"
    for m, template, actions in ROUTES:
        if m == method and _same_shape(template, path):
            return "mapped" if actions else "refused"
    return "unknown"


def _same_shape(template: str, path: str) -> bool:
    a, b = template.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or (x.startswith("{") and y.startswith("{")) for x, y in zip(a, b, strict=True))
