"""The HTTP gateway on real Hypercorn: auth, limits, decoding, problems, uploads, OpenAPI."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
import pytest
import trio
import trio.testing

from actors.accounts import IssueFrameToken
from actors.errors import NotFound, RateLimited, StorageFull
from actors.http import (
    PROBLEM_JSON,
    ApiRoute,
    Page,
    PageQuery,
    RequestContext,
    StagedUpload,
    UploadForm,
    api_route,
)
from config import HttpSettings
from supervision import Actor, ChildSpec, FaultAction, FaultRule
from tests.harness import ROOT
from tests.harness.http import bearer, running_hub

MiB = 1 << 20


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY: Any = _Any()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert "access-control-allow-origin" not in response.headers
    return problem


# -- routes the tests declare through the route layer ------------------------------------------


class Received(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    sha256: str
    file_name: str
    content_type: str
    metadata: str | None
    head: str


class Item(msgspec.Struct, frozen=True):
    n: int


class Uploads:
    """An upload route that keeps what it receives in ``kept`` (as the uploader will)."""

    def __init__(self, kept: Path) -> None:
        self.kept = kept
        self.calls = 0
        self.last = kept
        kept.mkdir()

    async def receive_file(self, context: RequestContext, upload: StagedUpload) -> Received:
        self.calls += 1
        self.last = self.kept / upload.path.name
        os.replace(upload.path, self.last)
        return Received(
            size=upload.size,
            sha256=upload.sha256,
            file_name=upload.file_name,
            content_type=upload.content_type,
            metadata=upload.fields.get("metadata"),
            head=upload.head[:8].hex(),
        )

    def routes(self) -> list[ApiRoute]:
        return [
            api_route(
                "POST",
                "/api/v1/test/upload",
                self.receive_file,
                upload=UploadForm(fields=("metadata",)),
                response=Received,
                status=201,
            )
        ]


async def explode(context: RequestContext, _: None) -> None:
    raise RuntimeError("the database password is hunter2")


async def missing(context: RequestContext, _: None) -> None:
    raise NotFound("no photo abc")


async def throttled(context: RequestContext, _: None) -> None:
    raise RateLimited("the uploader is busy", retry_after=7.2)


async def full(context: RequestContext, _: None) -> None:
    raise StorageFull("no space left for the upload")


async def numbers(context: RequestContext, _: None) -> Page[Item]:
    page = context.query(PageQuery)
    return Page(items=[Item(n) for n in range(page.limit)], next_cursor=page.cursor)


TEST_ROUTES = [
    api_route("GET", "/api/v1/test/explode", explode),
    api_route("GET", "/api/v1/test/missing/{thing_id}", missing),
    api_route("GET", "/api/v1/test/throttled", throttled),
    api_route("GET", "/api/v1/test/full", full),
    api_route("GET", "/api/v1/test/numbers", numbers, query=PageQuery, response=Page[Item]),
]


# -- authentication and authorisation ----------------------------------------------------------


async def test_api_routes_need_a_valid_bearer_token(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        alice = await hub.new_user("alice")
        for headers in (
            {},
            {"Authorization": f"Basic {alice.token}"},
            {"Authorization": "Bearer"},
            bearer(secrets.token_urlsafe(32)),
            bearer(alice.token + "x"),
        ):
            response = await hub.client.get("/api/v1/me", headers=headers)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
        response = await hub.client.get("/api/v1/me", headers=bearer(alice.token))
        assert response.status_code == 200
        assert response.json() == {
            "kind": "user",
            "id": alice.user_id,
            "name": "alice",
            "admin": False,
        }


async def test_only_admins_create_users_and_the_new_token_works_at_once(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = await hub.new_user("root", admin=True)
        alice = await hub.new_user("alice")
        frame_token = await hub.accounts.ask(IssueFrameToken(frame_id="frame-1", name="hall"))
        me = await hub.client.get("/api/v1/me", headers=bearer(frame_token))
        assert me.json() == {"kind": "frame", "id": "frame-1", "name": "hall", "admin": False}
        for token in (alice.token, frame_token):
            response = await hub.client.post(
                "/api/v1/users", json={"name": "mallory"}, headers=bearer(token)
            )
            assert_problem(response, 403)
        created = await hub.client.post(
            "/api/v1/users", json={"name": "bob"}, headers=bearer(admin.token)
        )
        assert created.status_code == 201
        bob = created.json()
        assert bob["name"] == "bob" and bob["admin"] is False
        me = await hub.client.get("/api/v1/me", headers=bearer(bob["token"]))
        assert me.json()["id"] == bob["user_id"]
        again = await hub.client.post(
            "/api/v1/users", json={"name": "BOB"}, headers=bearer(admin.token)
        )
        assert "already exists" in assert_problem(again, 409)["detail"]


async def test_each_token_has_its_own_rate_limit(tmp_path: Path) -> None:
    http = HttpSettings(host="127.0.0.1", port=0, rate_limit_per_minute=3)
    async with running_hub(tmp_path, http=http) as hub:
        alice, bob = await hub.new_user("alice"), await hub.new_user("bob")
        for _ in range(3):
            assert (await hub.client.get("/api/v1/me", headers=bearer(alice.token))).is_success
        limited = await hub.client.get("/api/v1/me", headers=bearer(alice.token))
        assert_problem(limited, 429)
        assert 1 <= int(limited.headers["retry-after"]) <= 20  # a request every 20 s
        assert (await hub.client.get("/api/v1/me", headers=bearer(bob.token))).is_success


async def test_failed_authentications_are_limited_per_client_address(tmp_path: Path) -> None:
    async with running_hub(tmp_path, failed_auth_per_minute=3) as hub:
        alice = await hub.new_user("alice")
        for _ in range(3):
            guess = bearer(secrets.token_urlsafe(32))
            assert_problem(await hub.client.get("/api/v1/me", headers=guess), 401)
        guess = bearer(secrets.token_urlsafe(32))
        limited = await hub.client.get("/api/v1/me", headers=guess)
        assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # Guessing from this address is stopped before any token is checked.
        locked = await hub.client.get("/api/v1/me", headers=bearer(alice.token))
        assert_problem(locked, 429)


# -- decoding and problems ---------------------------------------------------------------------


async def test_json_bodies_are_decoded_strictly(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        admin = bearer((await hub.new_user("root", admin=True)).token)
        post = hub.client.post
        malformed = await post("/api/v1/users", content=b'{"name": "x",', headers=admin)
        assert assert_problem(malformed, 400)["detail"].startswith("malformed JSON")
        cases = {
            b'{"name": "x", "admin": "yes"}': "Expected `bool`, got `str` - at `$.admin`",
            b'{"admin": true}': "Object missing required field `name`",
            b'{"name": "x", "nmae": "y"}': "Object contains unknown field `nmae`",
            b'{"name": ""}': "Expected `str` of length >= 1 - at `$.name`",
            b"[]": "Expected `object`, got `array`",
        }
        for body, detail in cases.items():
            response = await post(
                "/api/v1/users",
                content=body,
                headers={**admin, "Content-Type": "application/json"},
            )
            assert assert_problem(response, 422)["detail"] == detail
        form = await post("/api/v1/users", data={"name": "x"}, headers=admin)
        assert_problem(form, 415)
        huge = b'{"name": "' + b"x" * (2 * MiB) + b'"}'
        too_large = await post("/api/v1/users", content=huge, headers=admin)
        assert "larger than the limit" in assert_problem(too_large, 413)["detail"]
        users = await hub.store.fetch_all("SELECT name FROM users")
        assert users == [("root",)]


async def test_unknown_paths_and_methods_are_problems(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        token = bearer((await hub.new_user("alice")).token)
        for path in ("/api/v1/nothing", "/api/v1/me/", "/"):
            assert_problem(await hub.client.get(path, headers=token), 404)
        wrong = await hub.client.delete("/api/v1/me", headers=token)
        assert_problem(wrong, 405)
        assert wrong.headers["allow"] == "GET"
        preflight = await hub.client.options(
            "/api/v1/me",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert_problem(preflight, 405)


async def test_domain_errors_and_crashes_become_problems(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_hub(tmp_path, routes=TEST_ROUTES) as hub:
        token = bearer((await hub.new_user("alice")).token)
        get = hub.client.get
        assert assert_problem(await get("/api/v1/test/missing/abc", headers=token), 404)[
            "detail"
        ] == ("no photo abc")
        throttled = await get("/api/v1/test/throttled", headers=token)
        assert_problem(throttled, 429)
        assert throttled.headers["retry-after"] == "8"
        assert_problem(await get("/api/v1/test/full", headers=token), 507)
        with caplog.at_level(logging.ERROR, logger="framehub.http"):
            crashed = await get("/api/v1/test/explode", headers=token)
        problem = assert_problem(crashed, 500)
        assert "hunter2" not in crashed.text and "RuntimeError" not in crashed.text
        assert problem["correlation_id"] in problem["detail"]
        [record] = [r for r in caplog.records if r.exc_info and r.name == "framehub.http"]
        assert problem["correlation_id"] in record.getMessage()
        assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


async def test_list_routes_take_limit_and_cursor(tmp_path: Path) -> None:
    async with running_hub(tmp_path, routes=TEST_ROUTES) as hub:
        token = bearer((await hub.new_user("alice")).token)
        for query in ("limit=0", "limit=201", "limit=abc", "limit=", "cursor="):
            response = await hub.client.get(f"/api/v1/test/numbers?{query}", headers=token)
            assert "query parameter" in assert_problem(response, 400)["detail"]
        default = (await hub.client.get("/api/v1/test/numbers", headers=token)).json()
        assert len(default["items"]) == 50 and default["next_cursor"] is None
        page = await hub.client.get(
            "/api/v1/test/numbers", params={"limit": 3, "cursor": "b2Zmc2V0"}, headers=token
        )
        assert page.json() == {"items": [{"n": 0}, {"n": 1}, {"n": 2}], "next_cursor": "b2Zmc2V0"}


# -- uploads -----------------------------------------------------------------------------------


async def test_an_upload_arrives_with_its_fields_name_and_hash(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "kept")
    async with running_hub(tmp_path, routes=uploads.routes()) as hub:
        token = bearer((await hub.new_user("alice")).token)
        data = b"\xff\xd8\xff\xe0" + os.urandom(200_000)
        response = await hub.client.post(
            "/api/v1/test/upload",
            files={"file": ("../../etc/holiday.jpg", data, "image/jpeg")},
            data={"metadata": '{"album_id": "a1"}'},
            headers=token,
        )
        assert response.status_code == 201, response.text
        assert response.json() == {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "file_name": "holiday.jpg",
            "content_type": "image/jpeg",
            "metadata": '{"album_id": "a1"}',
            "head": data[:8].hex(),
        }
        [kept] = uploads.kept.iterdir()
        assert kept.read_bytes() == data
        assert list(hub.staging_dir.iterdir()) == []


async def test_malformed_uploads_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "kept")
    async with running_hub(tmp_path, routes=uploads.routes()) as hub:
        token = bearer((await hub.new_user("alice")).token)
        post = hub.client.post
        no_file = await post("/api/v1/test/upload", files={"metadata": (None, "{}")}, headers=token)
        assert "'file' part is missing" in assert_problem(no_file, 400)["detail"]
        stranger = await post(
            "/api/v1/test/upload",
            files={"file": ("a.jpg", b"x"), "other": (None, "y")},
            headers=token,
        )
        assert "unexpected part 'other'" in assert_problem(stranger, 400)["detail"]
        truncated = await post(
            "/api/v1/test/upload",
            content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
            headers={**token, "Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert_problem(truncated, 400)
        not_multipart = await post("/api/v1/test/upload", json={"file": "x"}, headers=token)
        assert_problem(not_multipart, 415)
        assert uploads.calls == 0
        assert list(hub.staging_dir.iterdir()) == []


async def test_an_oversized_upload_is_refused_with_413_and_nothing_is_kept(
    tmp_path: Path,
) -> None:
    uploads = Uploads(tmp_path / "kept")
    http = HttpSettings(host="127.0.0.1", port=0, max_upload_bytes=1 * MiB)
    async with running_hub(tmp_path, http=http, routes=uploads.routes()) as hub:
        token = bearer((await hub.new_user("alice")).token)
        response = await hub.client.post(
            "/api/v1/test/upload",
            files={"file": ("big.jpg", os.urandom(3 * MiB), "image/jpeg")},
            headers=token,
        )
        assert "larger than the limit of 1048576 bytes" in assert_problem(response, 413)["detail"]
        assert uploads.calls == 0
        assert list(hub.staging_dir.iterdir()) == []
        assert list(uploads.kept.iterdir()) == []
        just_right = await hub.client.post(
            "/api/v1/test/upload", files={"file": ("ok.jpg", os.urandom(MiB))}, headers=token
        )
        assert just_right.status_code == 201


async def test_a_declared_oversized_upload_is_refused_before_its_body_is_sent(
    tmp_path: Path,
) -> None:
    uploads = Uploads(tmp_path / "kept")
    async with running_hub(tmp_path, routes=uploads.routes()) as hub:
        token = (await hub.new_user("alice")).token
        stream = await trio.open_tcp_stream("127.0.0.1", hub.address.port)
        async with stream:
            await stream.send_all(
                b"POST /api/v1/test/upload HTTP/1.1\r\nHost: hub\r\n"
                + f"Authorization: Bearer {token}\r\n".encode()
                + b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                b"Content-Length: 10737418240\r\n\r\n"
            )
            reply = b""
            with trio.fail_after(10):
                while b"\r\n\r\n" not in reply:
                    reply += await stream.receive_some()
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert uploads.calls == 0


async def test_a_large_upload_streams_to_disk_without_being_held_in_memory(
    tmp_path: Path,
) -> None:
    size = 64 * MiB
    chunk = 64 * 1024
    uploads = Uploads(tmp_path / "kept")
    http = HttpSettings(host="127.0.0.1", port=0, max_upload_bytes=size)
    process = psutil.Process()
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        rng = random.Random(4)
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.heic"\r\n'
            b"Content-Type: image/heic\r\n\r\n"
        )
        for _ in range(size // chunk):
            block = rng.randbytes(chunk)
            sent.update(block)
            yield block
        yield b"\r\n--xyz--\r\n"

    async with running_hub(tmp_path, http=http, routes=uploads.routes()) as hub:
        token = bearer((await hub.new_user("alice")).token)
        headers = {**token, "Content-Type": "multipart/form-data; boundary=xyz"}
        warm_up = await hub.client.post("/api/v1/test/upload", files={"file": b"x"}, headers=token)
        assert warm_up.status_code == 201
        baseline = process.memory_info().rss
        peak = baseline
        samples = 0

        async def sample() -> None:
            nonlocal peak, samples
            while True:
                peak = max(peak, process.memory_info().rss)
                samples += 1
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            response = await hub.client.post("/api/v1/test/upload", content=body(), headers=headers)
            nursery.cancel_scope.cancel()
        assert response.status_code == 201, response.text
        received = response.json()
        assert received["size"] == size
        assert received["sha256"] == sent.hexdigest()
        digest = hashlib.sha256()
        with uploads.last.open("rb") as file:
            while block := file.read(MiB):
                digest.update(block)
        assert digest.hexdigest() == sent.hexdigest()
        assert samples > 10
        # The whole body is 64 MiB; the gateway holds at most about 1 MiB of it at a time.
        assert peak - baseline < size // 4, f"RSS grew by {(peak - baseline) / MiB:.1f} MiB"


async def test_the_public_url_is_the_base_url_when_set(tmp_path: Path) -> None:
    http = HttpSettings(host="127.0.0.1", port=0, public_url="https://frames.example/hub/")
    async with running_hub(tmp_path, http=http) as hub:
        assert hub.address.port > 0
        assert hub.address.base_url == "https://frames.example/hub"
        user = await hub.new_user("alice")
        document = (await hub.client.get("/openapi.json", headers=bearer(user.token))).json()
        assert document["servers"] == [{"url": "https://frames.example/hub"}]


# -- the API description and the probes --------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_the_openapi_document_describes_every_route(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "kept")
    routes = [*TEST_ROUTES, *uploads.routes()]
    async with running_hub(tmp_path, routes=routes) as hub:
        user = await hub.new_user("alice")
        response = await hub.client.get("/openapi.json", headers=bearer(user.token))
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert document["servers"] == [{"url": hub.address.base_url}]
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer", "description": ANY}}
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    declared = {("get", "/healthz"), ("get", "/readyz"), ("get", "/openapi.json")}
    declared |= {("get", "/asyncapi.json"), ("get", "/api/v1/me"), ("post", "/api/v1/users")}
    declared |= {(route.method.lower(), route.path) for route in routes}
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert described == declared
    operation_ids = []
    for path, item in document["paths"].items():
        for operation in item.values():
            operation_ids.append(operation["operationId"])
            protected = path not in ("/healthz", "/readyz")
            assert operation["security"] == ([{"bearerAuth": []}] if protected else [])
            for status, reply in operation["responses"].items():
                if int(status) >= 400:
                    schema = reply["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}
            if protected:
                assert {"401", "429"} <= operation["responses"].keys()
    assert len(operation_ids) == len(set(operation_ids))
    assert set(schemas["Problem"]["required"]) == {"type", "title", "status", "detail"}
    users = document["paths"]["/api/v1/users"]["post"]
    assert users["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewUserRequest"
    }
    assert {"201", "403", "409", "422"} <= users["responses"].keys()
    upload = document["paths"]["/api/v1/test/upload"]["post"]["requestBody"]["content"]
    form = upload["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    numbers = document["paths"]["/api/v1/test/numbers"]["get"]
    limit, cursor = numbers["parameters"]
    assert limit == {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    }
    assert cursor["name"] == "cursor" and cursor["in"] == "query"
    [thing] = document["paths"]["/api/v1/test/missing/{thing_id}"]["get"]["parameters"]
    assert thing == {"name": "thing_id", "in": "path", "required": True, "schema": ANY}


class Fragile(Actor[str]):
    """Crashes on "crash"; its second incarnation starts only when ``gate`` is set."""

    def __init__(self, starts: list[int], entered: trio.Event, gate: trio.Event) -> None:
        self._starts, self._entered, self._gate = starts, entered, gate

    async def on_start(self) -> None:
        self._starts.append(1)
        if len(self._starts) > 1:
            self._entered.set()
            await self._gate.wait()

    async def receive(self, message: str) -> str:
        if message == "crash":
            raise RuntimeError("crash requested")
        return message


async def test_readiness_follows_the_actor_tree(tmp_path: Path) -> None:
    starts: list[int] = []
    entered, gate = trio.Event(), trio.Event()
    fragile = ChildSpec("fragile", lambda: Fragile(starts, entered, gate))
    async with running_hub(tmp_path, domain=[fragile]) as hub:
        assert (await hub.client.get("/healthz")).json() == {"status": "ok"}
        assert (await hub.client.get("/readyz")).json() == {"status": "ready"}
        await hub.system.lookup("/domain/fragile").tell("crash")
        await entered.wait()
        not_ready = await hub.client.get("/readyz")
        assert "/domain/fragile is" in assert_problem(not_ready, 503)["detail"]
        assert (await hub.client.get("/healthz")).status_code == 200
        gate.set()
        assert await hub.system.lookup("/domain/fragile").ask("ping") == "ping"
        assert (await hub.client.get("/readyz")).status_code == 200


async def test_stopping_the_gateway_finishes_requests_in_flight(tmp_path: Path) -> None:
    entered, release = trio.Event(), trio.Event()

    async def slow(context: RequestContext, _: None) -> Item:
        entered.set()
        await release.wait()
        return Item(7)

    routes = [api_route("GET", "/api/v1/test/slow", slow, response=Item)]
    async with running_hub(tmp_path, routes=routes) as hub:
        token = bearer((await hub.new_user("alice")).token)
        replies: list[httpx.Response] = []

        async def call() -> None:
            replies.append(await hub.client.get("/api/v1/test/slow", headers=token))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await entered.wait()
            nursery.start_soon(hub.system.stop_child, "/edge", "http")
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            release.set()
        assert replies[0].status_code == 200 and replies[0].json() == {"n": 7}
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", hub.address.port)


# -- the command line --------------------------------------------------------------------------


async def _users_add(data_dir: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "FRAMEHUB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    result = await trio.run_process(
        [sys.executable, str(ROOT / "run.py"), "users", "add", *args],
        capture_stdout=True,
        capture_stderr=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_cli_tokens_work_with_a_hub_started_later_and_one_already_running(
    tmp_path: Path,
) -> None:
    code, stdout, stderr = await _users_add(tmp_path, "alice", "--admin")
    assert code == 0, stderr
    *before, alice_token = stdout.strip().splitlines()
    assert alice_token.strip() == alice_token and len(alice_token) >= 43
    assert alice_token not in "".join(before) + stderr
    async with running_hub(tmp_path) as hub:
        me = await hub.client.get("/api/v1/me", headers=bearer(alice_token))
        assert me.status_code == 200
        assert me.json()["name"] == "alice" and me.json()["admin"] is True
        code, stdout, stderr = await _users_add(tmp_path, "bob")
        assert code == 0, stderr
        bob_token = stdout.strip().splitlines()[-1]
        me = await hub.client.get("/api/v1/me", headers=bearer(bob_token))
        assert me.status_code == 200
        assert me.json()["name"] == "bob" and me.json()["admin"] is False
        code, stdout, stderr = await _users_add(tmp_path, "Bob")
        assert code == 1 and stdout == "" and "already exists" in stderr


# -- secrets stay secret -----------------------------------------------------------------------


async def test_tokens_appear_in_no_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    async with running_hub(tmp_path, routes=TEST_ROUTES, failed_auth_per_minute=2) as hub:
        admin = await hub.new_user("root", admin=True)
        tokens.append(admin.token)
        created = await hub.client.post(
            "/api/v1/users", json={"name": "bob"}, headers=bearer(admin.token)
        )
        tokens.append(created.json()["token"])
        frame_token = await hub.accounts.ask(IssueFrameToken(frame_id="f1", name="hall"))
        tokens.append(frame_token)
        for token in tokens:
            await hub.client.get("/api/v1/me", headers=bearer(token))
            await hub.client.get("/api/v1/test/explode", headers=bearer(token))
        # The accounts actor crashes while it holds a token: the crash is logged, and the
        # message is kept as a dead letter.
        hub.system.faults.install(
            FaultRule(
                action=FaultAction.CRASH, path="/domain/accounts", message_type="Authenticate"
            )
        )
        crashed = await hub.client.get("/api/v1/me", headers=bearer(frame_token))
        assert_problem(crashed, 500)
        hub.system.faults.clear()
        for _ in range(3):
            guess = secrets.token_urlsafe(32)
            tokens.append(guess)
            await hub.client.get("/api/v1/me", headers=bearer(guess))
        letters = hub.system.dead_letters.entries()
    formatter = logging.Formatter("%(name)s %(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    lines += [f"{letter.message} {letter.error} {letter.traceback}" for letter in letters]
    assert [letter.message for letter in letters] == ["Authenticate(token=<redacted>)"]
    assert any("GET /api/v1/me 200" in line for line in lines)
    for token in tokens:
        assert not [line for line in lines if token in line]
