"""Which paths GET profile's hot path (:mod:`api.http.hot_path`) takes: the route's own
template with a canonical UUID, matched below the app's ``root_path`` as the router does."""

from __future__ import annotations

import pytest

from api.http.hot_path import HotProfileReads, _route_path

ID = "3f2c8a4e-9b1d-4c7e-a5f0-6d2e8b9c1a47"  # fixed: xdist workers collect the same ids


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("not called")


@pytest.mark.parametrize(
    ("path", "root_path", "taken"),
    [
        (f"/v1/customers/{ID}", "", True),
        (f"/crm/v1/customers/{ID}", "/crm", True),  # mounted: the router strips root_path
        (f"/v1/customers/{ID}", "/crm", True),  # a server that already stripped it
        (f"/v1/customers/{ID}/", "", False),
        (f"/v1/customers/{ID.upper()}", "", False),
        (f"/v1/customers/{ID.replace('-', '')}", "", False),
        (f"/v1/customers/{ID}/rfm", "", False),
        (f"/crm/v1/customers/{ID}", "", False),
    ],
)
def test_the_hot_path_takes_the_routes_path_below_root_path(
    path: str, root_path: str, taken: bool
) -> None:
    hot = HotProfileReads(_app)
    match = hot.path.fullmatch(_route_path({"path": path, "root_path": root_path}))
    assert (match is not None) == taken
    if match is not None:
        assert match[1] == ID
