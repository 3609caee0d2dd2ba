"""Every HTTP route refuses callers without a valid token of its kind, read from the router.

The routes are not listed here: the running gateway is asked what its router dispatches
(``GetRoutes``), so a route added tomorrow, anywhere, is audited by these tests as it is, and
one added without a token fails them until it is listed among ``EXEMPT`` with a reason.
Every request carries another site's ``Origin``: no answer may grant it access (CORS is off),
nor may a browser's preflight (``OPTIONS``), which is a 405 like any undeclared method.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from actors.http import ServedRoute
from tests.harness.hub import DEVICES, Frame, Hub, User, running_hub
from tests.harness.photos import jpeg
from tests.harness.replies import body_of
from tests.harness.security import ORIGIN, addresses, fill, no_cors, refused, served_routes

EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe: asked by supervisors and load balancers, no data",
    ("GET", "/readyz"): "readiness probe: asked by supervisors and load balancers, no data",
    ("GET", "/console"): "the console's static page: a browser navigation cannot send a "
    "bearer header; the page carries no data, its WebSocket asks for the token in hello",
    ("GET", "/console/config.json"): "where the console page opens its WebSocket: no data",
    ("GET", "/console/{asset}"): "the console page's script and stylesheet: static files",
}
"""The routes served without a token, and why each may be."""

GET_ASYNCAPI = ("GET", "/asyncapi.json")

OTHER_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
WRONG_KIND = {"user": ("frame",), "admin": ("frame", "member"), "frame": ("member", "admin")}
"""Which valid tokens each kind of route must refuse with 403."""


class Callers:
    def __init__(self, admin: User, member: User, frame: Frame, unpaired: Frame) -> None:
        self.admin, self.member, self.frame, self.unpaired = admin, member, frame, unpaired

    def of(self, kind: str) -> User | Frame:
        found: User | Frame = getattr(self, kind)
        return found


async def callers(hub: Hub) -> Callers:
    admin = await hub.new_user("root", admin=True)
    member = await hub.new_user("member")
    frame = await hub.pair_frame(admin, "Hall")
    unpaired = await hub.pair_frame(admin, "Gone")
    gone = await hub.client.delete(f"{DEVICES}/{unpaired.device_id}", headers=admin.auth)
    assert gone.status_code == 204
    return Callers(admin, member, frame, unpaired)


def bad_credentials(who: Callers, turn: int) -> list[tuple[str, dict[str, str], bool]]:
    """(what, headers, whether the hub counts it as a failed authentication): no token, a
    malformed one, a wrong one, and in turn one of the other shapes of a bad token."""
    token = who.admin.token
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    stranger = [
        ("Bearer without a token", {"Authorization": "Bearer"}, False),
        ("an admin's token without a scheme", {"Authorization": token}, False),
        ("an admin's token altered", {"Authorization": f"Bearer {altered}"}, True),
        ("two tokens", {"Authorization": f"Bearer {token} {token}"}, True),
        ("a token of 8 KiB", {"Authorization": "Bearer " + "a" * 8192}, True),
        ("an unpaired frame's token", who.unpaired.auth, True),
    ]
    return [
        ("no Authorization header", {}, False),
        ("an admin's token as Basic", {"Authorization": f"Basic {token}"}, False),
        ("an unknown token", {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}, True),
        stranger[turn % len(stranger)],
    ]


async def test_every_route_but_the_exempt_ones_refuses_without_a_valid_token_of_its_kind(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path) as hub:
        who = await callers(hub)
        routes = await served_routes(hub)
        assert [r for r in routes if not r.declared] == [], "routes not made with api_route"
        public = {(r.method, r.path) for r in routes if r.auth is None}
        assert public == set(EXEMPT), f"served without a token and not exempt: {public}"
        audited = [r for r in routes if (r.method, r.path) not in EXEMPT]
        tokens = [who.admin.token, who.member.token, who.frame.token, who.unpaired.token]
        checked = 0

        async def ask(
            client: httpx.AsyncClient, route: ServedRoute, headers: dict[str, str], status: int
        ) -> None:
            response = await client.request(
                route.method, fill(route.path), headers={**ORIGIN, **headers}
            )
            assert response.status_code == status, (route, headers.keys(), response.text)
            refused(response, status, *tokens)

        async with addresses(hub) as sources:
            for turn, route in enumerate(audited):
                for _, headers, counted in bad_credentials(who, turn):
                    client = await sources.for_failure() if counted else hub.client
                    await ask(client, route, headers, 401)
                for kind in WRONG_KIND.get(route.auth or "", ()):
                    await ask(hub.client, route, who.of(kind).auth, 403)
                checked += 1
            other = await other_methods(hub, routes)
            print(
                f"\n{checked} routes x methods refused without a valid token of their kind "
                f"({len(routes)} served, {len(EXEMPT)} exempt); {other} undeclared methods "
                f"answered 405; failed authentications spread over {sources.used} addresses"
            )
        assert checked == len(routes) - len(EXEMPT) and checked >= 50

        # The API and MQTT descriptions need any valid token; the counters an admin's. None,
        # nor any other answer, grants another site's page access (CORS is off).
        assert (GET_ASYNCAPI, "user_or_frame") in {((r.method, r.path), r.auth) for r in routes}
        refused(await hub.client.get("/asyncapi.json", headers=ORIGIN), 401)
        for caller in (who.member, who.frame, who.admin):
            described = await hub.client.get("/openapi.json", headers={**ORIGIN, **caller.auth})
            assert described.status_code == 200 and described.json()["openapi"]
            assert no_cors(described)
            topics = await hub.client.get("/asyncapi.json", headers={**ORIGIN, **caller.auth})
            assert topics.status_code == 200 and topics.json()["asyncapi"] == "3.0.0"
            assert no_cors(topics)
        refused(await hub.client.get("/metrics", headers=who.member.auth), 403)
        metrics = await hub.client.get("/metrics", headers={**ORIGIN, **who.admin.auth})
        assert metrics.status_code == 200 and "framehub_mqtt_connected" in metrics.text
        assert no_cors(metrics)
        for route in routes:
            if route.method == "GET":
                url = fill(route.path, {"asset": "console.js"})
                answer = await hub.client.get(url, headers={**ORIGIN, **who.admin.auth})
                assert answer.status_code < 500 and no_cors(answer), (route, answer.headers)


async def other_methods(hub: Hub, routes: list[ServedRoute]) -> int:
    """A method a path does not declare is a 405 problem, without a token, revealing nothing
    and granting no CORS: OPTIONS (as a browser's preflight) and in turn another method on
    each path; returns how many were asked."""
    declared: dict[str, set[str]] = {}
    for route in routes:
        declared.setdefault(route.path, set()).add(route.method)
    asked = 0

    async def ask(method: str, path: str, allow: str) -> None:
        preflight = {**ORIGIN, "Access-Control-Request-Method": "GET"}
        url = fill(path, {"asset": "console.js"})
        response = await hub.client.request(method, url, headers=preflight)
        assert response.status_code == 405, (method, path, response.text)
        assert response.headers["allow"] == allow
        if method != "HEAD":
            assert set(refused(response, 405)) <= {"type", "title", "status", "detail"}

    for turn, (path, methods) in enumerate(declared.items()):
        others = [method for method in OTHER_METHODS if method not in methods]
        for method in {"OPTIONS", others[turn % len(others)]}:
            await ask(method, path, ", ".join(sorted(methods)))
            asked += 1
    return asked


async def test_the_exempt_routes_serve_no_one_s_data(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        mark = f"zq{secrets.token_hex(6)}"
        admin = await hub.new_user(f"root-{mark}", admin=True)
        member = await hub.new_user(f"member-{mark}")
        frame = await hub.pair_frame(admin, f"frame-{mark}")
        photo = body_of(await hub.upload(member, jpeg(seed=5), f"photo-{mark}.jpg"))
        album = body_of(
            await hub.client.post(
                "/api/v1/albums", json={"name": f"album-{mark}"}, headers=member.auth
            )
        )
        await hub.analysed()
        revealing = [
            mark,
            admin.user_id,
            member.user_id,
            frame.device_id,
            photo["file_id"],
            photo["sha256"],
            album["album_id"],
            admin.token,
            member.token,
            frame.token,
            frame.mqtt["password"],
        ]
        served = {(r.method, r.path) for r in await served_routes(hub)}
        assert set(EXEMPT) <= served

        anonymous = httpx.AsyncClient(base_url=str(hub.client.base_url), timeout=60)
        async with anonymous:
            page = await anonymous.get("/console")
            assets = sorted(set(re.findall(r"""["'](/console/[^"'?#]+)""", page.text)))
            assert "/console/console.js" in assets and "/console/console.css" in assets
            answers = [page, *[await anonymous.get(url) for url in assets]]
            answers.append(await anonymous.get("/console/config.json"))
            answers += [await anonymous.get("/healthz"), await anonymous.get("/readyz")]
        for response in answers:
            assert response.status_code == 200, (response.url, response.status_code)
            shown = response.text + str(response.headers)
            assert [s[:8] for s in revealing if s in shown] == [], response.url
        assert answers[-2].json() == {"status": "ok"}
        assert answers[-1].json() == {"status": "ready"}
        assert set(answers[-3].json()) == {"ws_url"}
