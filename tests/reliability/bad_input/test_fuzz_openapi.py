"""schemathesis against the hub's own ``/openapi.json``: every operation, with real tokens.

One hub (``run.py serve``, a child process on loopback) is filled with an admin, a member and
one or more of every object the routes name (``tests/harness/fuzz/openapi.py``).
schemathesis loads the document the hub serves (fetched with a token) and sends requests
generated from it over real HTTP, one pytest test per operation and caller:

* with the admin's token: the documented examples, the coverage phase (boundary values,
  missing and wrong-typed fields, every enum value, an unexpected method) and seeded fuzzing,
  schema-conforming (positive) and deliberately wrong (negative);
* with a member's token: seeded fuzzing again, the requests naming the admin's objects too
  as well as its own; a request that names the admin's photo, album, playlist, schedule or
  notification (path, query or body) must get the answer it gets naming ids that do not
  exist: to a member, the admin's objects are not there.

Fuzzed requests name real objects three times out of four: path parameters and the id fields
of bodies draw from the objects made beforehand, an upload's ``file`` is a real photo, a
download gets a ``Range`` (good, past the end, unusable). So requests reach the domain actors
instead of stopping at a 404, and the deleting routes delete objects of their own.

Every response is checked: no 5xx, a documented status, content type and headers, a body
that matches the documented schema, a 4xx for every request the schema says is wrong, a 405
with ``Allow`` for a method the path does not have. Finally every served operation must have
been fuzzed with both tokens, none refused for its token (401) or rate (429), and the hub must
still be ready with no error logged.

What the fuzzing found is kept as explicit cases, checked the same way: the 200 of an upload
of bytes already there, the console assets' content types, and the downloads' ``Range`` (206,
a 416 problem past the end, unusable ranges ignored) and ``If-None-Match`` (304).

``--seed N`` changes the generated requests (the same seed makes the same requests);
``--long`` generates many more per operation.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from schemathesis import Case
from schemathesis.core.failures import FailureGroup, as_reported_failure
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.hypothesis.reporting import ignore_hypothesis_output
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.schemas import BaseSchema

from actors.frames import USER_COMMANDS
from tests.harness.fuzz.openapi import KIND_OF, Caller, FuzzHub, fuzz_hub
from tests.harness.photos import jpeg, png
from tests.harness.routes import declared_api_routes

ADMIN_EXAMPLES = (10, 300)
"""Fuzzed requests per operation (positive and negative together) with the admin's token,
besides the examples and the coverage phase's cases: in CI, and under ``--long``."""
MEMBER_EXAMPLES = (4, 100)
"""... with the member's token (fuzzing only)."""

UNEXPECTED_METHODS = ("PATCH", "TRACE")
"""Methods the coverage phase tries on every path that lacks them (a 405 with ``Allow``; one
code path serves every such answer, so two methods are enough)."""

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
)
"""Checks on every response. Left out on purpose:

* ``positive_data_acceptance``: a request that fits the schema may still be refused by the
  domain with 400/404/409/422 (a firmware version that is not semantic, a campaign for models
  no frame has, a photo that is not in the frame's albums): rules a JSON schema cannot state.
* ``ignored_auth``: it re-sends requests with a made-up token; the hub's limit on failed
  authentications per client address (loopback included) would then answer 429 to all that
  follows. That every route refuses requests without a valid token is proved route by route
  in ``tests/security``; here every request carries its caller's token.
* ``use_after_free``, ``ensure_resource_availability``, ``object_level_authorization``: they
  need the stateful phase or identities schemathesis signs up itself; instead the member pass
  asserts that the admin's objects answer as objects that do not exist (see ``_fuzz``).
"""

RANGES = (
    "bytes=0-9",
    "bytes=-5",
    "bytes=5-",
    "bytes=0-0,2-3,1-1",
    "bytes=0-1,0-1",
    "bytes=1000000000-",
    "bytes=-0",
    "bytes=9-2",
    "bytes=abc",
    "bytes=",
    "items=0-1",
    "bytes=0-1," * 200,
)
"""``Range`` values downloads get: good ones, past the end, and ones that cannot be used."""

VALUES: dict[str, tuple[str, ...]] = {
    "command": USER_COMMANDS,
    "version": ("1.0.0", "2.0.0", "2.2.0-rc.1", "3.0.0+build.5"),
    "model": ("FH-10",),
    "models": ("FH-10", "FH-20"),
    "hw_version": ("rev1", "rev2"),
    "min_hw_version": ("rev1", "rev2"),
    "metric": ("temperature_c",),
}
"""Values the domain accepts for fields the schema only calls strings (a firmware version
must be semantic, a command one of the frame's): with them requests reach the success path."""

PROBES = (
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
    "GET /asyncapi.json",
    "GET /api/v1/me",
    "POST /api/v1/users",
)
"""The gateway's own routes (declared inside it)."""
OPERATIONS = [
    *PROBES,
    *(f"{route.method} {route.path}" for route in declared_api_routes()),
]
"""Every operation the hub serves; the last test checks it against the served document."""


class Traffic:
    """What every operation answered, per caller: the proof that requests got through."""

    def __init__(self) -> None:
        self.statuses: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)

    def record(self, caller: str, case: Case, response: Response) -> None:
        self.statuses[(caller, case.operation.label)][response.status_code] += 1

    def requests(self, caller: str) -> int:
        return sum(sum(c.values()) for (who, _), c in self.statuses.items() if who == caller)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzHub]:
    with fuzz_hub(
        tmp_path_factory.mktemp("fuzz-openapi"),
        # One token sends thousands of requests here; the per-token limit is not under test.
        HTTP__RATE_LIMIT_PER_MINUTE="10000000",
        # Small limits: generated files are small, and 413 is a documented answer.
        HTTP__MAX_UPLOAD_BYTES=str(2 << 20),
        OTA__MAX_FIRMWARE_BYTES=str(2 << 20),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture(scope="module")
def schemas() -> dict[str, BaseSchema]:
    """Each caller's loaded schema, made by the first test that needs it."""
    return {}


def _positive(case: Case, location: ParameterLocation) -> bool:
    meta = case.meta
    component = meta.components.get(location) if meta is not None else None
    return component is None or component.mode == GenerationMode.POSITIVE


def _often(values: Sequence[Any]) -> st.SearchStrategy[Any]:
    """One of ``values`` three times out of four, else None (keep what was generated)."""
    return st.integers(0, 3).flatmap(lambda n: st.none() if n == 3 else st.sampled_from(values))


def _often_some(values: Sequence[Any], size: int) -> st.SearchStrategy[Any]:
    """Up to ``size`` (at least one) of ``values`` three times out of four, else None."""
    some = st.lists(st.sampled_from(values), min_size=1, max_size=max(1, size), unique=True)
    return st.integers(0, 3).flatmap(lambda n: st.none() if n == 3 else some)


def _declared_fields(case: Case) -> dict[str, object]:
    """The top-level string and array fields the case's body schema declares, each with an
    empty value of its type."""
    fields: dict[str, object] = {}
    for body in case.operation.body:
        if body.media_type != case.media_type:
            continue
        for name, field in body.optimized_schema.get("properties", {}).items():
            types = {field.get("type")} | {kind.get("type") for kind in field.get("anyOf", [])}
            if "array" in types:
                fields[name] = []
            elif "string" in types:
                fields[name] = ""
    return fields


def _real_objects(caller: Caller) -> Any:
    """The ``flatmap_case`` hook: real ids in path parameters, query parameters and the
    top-level fields of bodies (``device_id``, ``file_ids``...), values the domain accepts in
    fields the schema only calls strings (``VALUES``), a real photo as an upload's ``file``, a
    ``Range`` for downloads; each three times out of four. Only parts schemathesis generated
    as valid are touched, so a negative case stays negative (its one change to negative cases:
    a form field negated into an array of at most one item, which the wire cannot tell from a
    valid form, is sent as two parts)."""

    def flatmap_case(context: Any, case: Case) -> st.SearchStrategy[Case]:
        operation = case.operation
        names = list(case.path_parameters or {})
        # DELETE /things/{id} deletes the object: it draws from the caller's victims.
        deleting = operation.method.upper() == "DELETE" and len(names) == 1
        choices: dict[tuple[str, str], st.SearchStrategy[Any]] = {}

        def offer(where: str, key: str, value: object, *, deleting: bool = False) -> None:
            if isinstance(value, list):
                several = caller.ids(KIND_OF.get(key[:-1], ""), deleting=False)
                if several or key in VALUES:
                    choices[(where, key)] = _often_some(several or VALUES[key], len(value))
            elif isinstance(value, str):
                real = caller.ids(KIND_OF.get(key, ""), deleting=deleting) or VALUES.get(key, ())
                if real:
                    choices[(where, key)] = _often(real)

        if _positive(case, ParameterLocation.PATH):
            for name in names:
                offer("path", name, case.path_parameters[name], deleting=deleting)
        if isinstance(case.query, dict) and _positive(case, ParameterLocation.QUERY):
            for name, value in case.query.items():
                offer("query", name, value)
        headers = {parameter.name.lower() for parameter in operation.headers}
        if "range" in headers and _positive(case, ParameterLocation.HEADER):
            choices[("headers", "Range")] = _often(RANGES)
        body = case.body
        if isinstance(body, dict) and _positive(case, ParameterLocation.BODY):
            # Declared fields left out are offered too (a campaign needs targets).
            for key, value in {**_declared_fields(case), **body}.items():
                if key == "file" and operation.path.endswith("/photos/upload"):
                    choices[("body", key)] = _often([jpeg(64, 48, seed=3), png(40, 30, seed=4)])
                else:
                    offer("body", key, value)
        elif isinstance(body, dict) and case.media_type == "multipart/form-data":
            # A form field cannot carry an array: [] sends no part and ["x"] one text part,
            # which are valid forms (schemathesis then expects a refusal that cannot come).
            # Two parts are what an array looks like on the wire: keep the case negative so.
            for key, value in body.items():
                if key != "file" and (value == {} or (isinstance(value, list) and len(value) < 2)):
                    body[key] = [*(value if isinstance(value, list) else []), "twice", "again"][:2]

        def apply(drawn: dict[tuple[str, str], Any]) -> Case:
            for (where, name), value in drawn.items():
                if value is not None:
                    getattr(case, "path_parameters" if where == "path" else where)[name] = value
            return case

        return st.fixed_dictionaries(choices).map(apply)

    return flatmap_case


def _schema(hub: FuzzHub, caller: Caller, seed: int, examples: int, *, full: bool) -> BaseSchema:
    """The document the hub serves to ``caller``, ``caller``'s token on every operation that
    declares the bearer scheme, and the real-objects hook. ``full``: the examples and coverage
    phases too, else fuzzing only."""
    document = hub.openapi(caller)
    (scheme,) = document["components"]["securitySchemes"]
    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            "base-url": hub.base_url,
            "request-timeout": 60,
            "generation": {
                "mode": "all",
                "max-examples": examples,
                "deterministic": True,
                "database": "none",
                # Requests keep their token: removing or mangling it made a third of the
                # negative cases plain 401s (tests/security covers refusals route by route).
                "with-security-parameters": False,
            },
            "phases": {
                "examples": {"enabled": full},
                "coverage": {"enabled": full, "unexpected-methods": list(UNEXPECTED_METHODS)},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {"openapi": {scheme: {"bearer": caller.token}}},
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    schema.hook(_real_objects(caller))
    return schema


@pytest.fixture(scope="module")
def admin_schema(hub: FuzzHub) -> BaseSchema:
    """The admin's schema for the explicit cases below (no generation)."""
    return _schema(hub, hub.admin, 0, 1, full=False)


def _checked(schema: BaseSchema, caller: Caller, label: str, **parts: Any) -> Response:
    """One explicit request, validated with the same checks as the generated ones."""
    method, path = label.split(" ", 1)
    case = schema[path][method].Case(**parts)
    case.headers = {**(case.headers or {}), **caller.auth}
    response = case.call()
    case.validate_response(response)
    return response


def _header(response: Response, name: str) -> str:
    (value,) = response.headers[name.lower()]
    return value


# -- what the fuzzing found, kept as explicit cases ---------------------------------------------


def test_the_same_upload_again_is_the_documented_200(
    hub: FuzzHub, admin_schema: BaseSchema
) -> None:
    """Found: the second upload of the same bytes answers 200 (the existing photo), which the
    document did not list; it now lists 200 with the same body as 201."""
    data = jpeg(48, 32, seed=99)
    statuses = [
        _checked(
            admin_schema,
            hub.admin,
            "POST /api/v1/storage/photos/upload",
            body={"file": data},
            media_type="multipart/form-data",
        ).status_code
        for _ in range(2)
    ]
    assert statuses == [201, 200]


def test_console_assets_have_their_documented_content_type(
    hub: FuzzHub, admin_schema: BaseSchema
) -> None:
    """Found: stylesheet and script were documented as text/plain; they are text/*."""
    for asset, media in (("console.css", "text/css"), ("console.js", "text/javascript")):
        response = _checked(
            admin_schema, hub.admin, "GET /console/{asset}", path_parameters={"asset": asset}
        )
        assert (response.status_code, _header(response, "content-type").split(";")[0]) == (
            200,
            media,
        )


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("bytes=0-9", 206),
        ("bytes=-5", 206),
        ("bytes=0-0,2-3", 206),
        ("bytes=1000000000-", 416),
        # Unusable ranges are ignored: the whole file.
        ("bytes=abc", 200),
        ("bytes=9-2", 200),
        ("items=0-1", 200),
        ("bytes=", 200),
    ],
)
def test_downloads_answer_range_as_documented(
    hub: FuzzHub, admin_schema: BaseSchema, value: str, status: int
) -> None:
    """Found: every file download answered an unusable ``Range`` with a plain-text 400 and one
    past the end with a bare 416, outside the problem+json contract and the document. Now an
    unusable range is ignored (200, the whole file), one past the end is a 416 problem with
    ``Content-Range: bytes */<size>``, and the document lists Range, 206, 304 and 416."""
    admin = hub.admin
    downloads = [
        ("GET /api/v1/files/download/{file_id}", {"file_id": admin.keep["photo"][0]}),
        ("GET /api/v1/firmware/{firmware_id}/download", {"firmware_id": admin.keep["firmware"][0]}),
        ("GET /console/{asset}", {"asset": "console.css"}),
        ("GET /console", {}),
    ]
    for label, path_parameters in downloads:
        whole = _checked(admin_schema, admin, label, path_parameters=path_parameters)
        assert whole.status_code == 200, (label, whole.status_code)
        response = _checked(
            admin_schema,
            admin,
            label,
            path_parameters=path_parameters,
            headers={"Range": value},
        )
        assert response.status_code == status, (label, response.status_code, response.text)
        if status == 200:
            assert response.content == whole.content
        if status == 416:
            assert _header(response, "content-type") == "application/problem+json"
            assert _header(response, "content-range") == f"bytes */{len(whole.content)}"
            assert response.json()["status"] == 416


def test_a_download_answers_its_etag_with_the_documented_304(
    hub: FuzzHub, admin_schema: BaseSchema
) -> None:
    """The 304 of ``If-None-Match`` is in the document too (without a body)."""
    admin = hub.admin
    for label, path_parameters in (
        ("GET /api/v1/files/download/{file_id}", {"file_id": admin.keep["photo"][0]}),
        ("GET /api/v1/firmware/{firmware_id}/download", {"firmware_id": admin.keep["firmware"][0]}),
    ):
        whole = _checked(admin_schema, admin, label, path_parameters=path_parameters)
        etag = _header(whole, "etag")
        for match in (etag, f'"other", {etag}'):
            again = _checked(
                admin_schema,
                admin,
                label,
                path_parameters=path_parameters,
                headers={"If-None-Match": match},
            )
            assert (again.status_code, again.content, _header(again, "etag")) == (304, b"", etag)


# -- schemathesis over every operation ----------------------------------------------------------


def _named(case: Case) -> set[str]:
    """Every string a request names in its path, query and top-level body fields."""
    values: list[object] = [*(case.path_parameters or {}).values(), *(case.query or {}).values()]
    if isinstance(case.body, dict):
        values.extend(case.body.values())
    named: set[str] = set()
    for value in values:
        items = value if isinstance(value, list) else [value]
        named.update(item for item in items if isinstance(item, str))
    return named


def _made_up(object_id: str) -> str:
    """An id of the same shape that names nothing."""
    return hashlib.sha256(object_id.encode()).hexdigest()[: len(object_id)]


def _renamed(case: Case, names: dict[str, str]) -> Case:
    """The same request with the ids in ``names`` replaced wherever it names them."""

    def rename(value: Any) -> Any:
        if isinstance(value, list):
            return [rename(item) for item in value]
        return names.get(value, value) if isinstance(value, str) else value

    def renamed(container: Any) -> Any:
        if not isinstance(container, dict):
            return container
        return {key: rename(value) for key, value in container.items()}

    return case.operation.Case(
        path_parameters=renamed(case.path_parameters),
        query=renamed(case.query),
        headers=dict(case.headers or {}),
        body=renamed(case.body),
        media_type=case.media_type,
    )


def _fuzz(schema: BaseSchema, traffic: Traffic, caller: Caller, label: str) -> None:
    """Run schemathesis' phases for one operation, as its own pytest loader does
    (``schemathesis.pytest.from_fixture`` itself trips over pytest 9.2's node ids)."""
    method, path = label.split(" ", 1)
    session = requests.Session()  # keep-alive across the operation's requests

    def test(case: Case) -> None:
        response = case.call(session=session)
        traffic.record(caller.name, case, response)
        case.validate_response(response)
        # Tenancy, fuzzed: another user's photo, album, playlist, schedule or notification is
        # to this caller what an object that does not exist is, wherever the request names
        # it. The same request naming made-up ids instead must get the same answer.
        foreign = _named(case) & caller.foreign
        if foreign:
            stranger = _renamed(case, {name: _made_up(name) for name in foreign})
            other = stranger.call(session=session)
            traffic.record(caller.name, stranger, other)
            assert response.status_code == other.status_code, (
                f"{label} as {caller.name}: naming another user's {sorted(foreign)} answered "
                f"{response.status_code} ({response.text[:200]}), naming ids that do not exist "
                f"answered {other.status_code} ({other.text[:200]})"
            )

    run = build_operation_test(
        config=schema.config,
        operation=schema[path][method],
        test_func=test,
        given_kwargs={},
        feedback=FeedbackSources(),
    )
    try:
        with session, ignore_hypothesis_output():
            run()
    except FailureGroup as failures:
        raise as_reported_failure(failures) from None


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_with_an_admin_token(
    hub: FuzzHub,
    schemas: dict[str, BaseSchema],
    traffic: Traffic,
    label: str,
    seed: int,
    long_run: bool,
) -> None:
    if "admin" not in schemas:
        examples = ADMIN_EXAMPLES[long_run]
        schemas["admin"] = _schema(hub, hub.admin, seed, examples, full=True)
    _fuzz(schemas["admin"], traffic, hub.admin, label)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_with_a_member_token(
    hub: FuzzHub,
    schemas: dict[str, BaseSchema],
    traffic: Traffic,
    label: str,
    seed: int,
    long_run: bool,
) -> None:
    if "member" not in schemas:
        examples = MEMBER_EXAMPLES[long_run]
        schemas["member"] = _schema(hub, hub.member, seed + 1, examples, full=False)
    _fuzz(schemas["member"], traffic, hub.member, label)


def test_every_operation_was_reached_and_the_hub_is_still_ready(
    hub: FuzzHub, traffic: Traffic
) -> None:
    document = hub.openapi(hub.admin)
    served = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
    }
    # The parametrized list is the served document, no more and no less.
    assert served == set(OPERATIONS), sorted(served ^ set(OPERATIONS))
    for caller in ("admin", "member"):
        fuzzed = {label for (who, label) in traffic.statuses if who == caller}
        assert fuzzed == served, (caller, sorted(served - fuzzed))
    # Every request got past the gateway's token check and rate limit.
    for (caller, label), statuses in traffic.statuses.items():
        assert not set(statuses) & {401, 429}, (caller, label, statuses)
    assert hub.ready().status_code == 200, hub.ready().text
    assert hub.log_lines("Traceback") == [], hub.log_tail()
    print(
        f"\n{len(served)} operations; requests: admin {traffic.requests('admin')}, "
        f"member {traffic.requests('member')}"
    )
    for (caller, label), statuses in sorted(traffic.statuses.items()):
        print(f"{caller:6} {label:55} {dict(sorted(statuses.items()))}")
