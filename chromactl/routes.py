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
