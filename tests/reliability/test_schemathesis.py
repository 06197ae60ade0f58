"""schemathesis against our own OpenAPI document and a real server: no 500s, documented
status codes and content types, and response bodies that conform to the schemas."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mailsac.api.openapi import build_spec
from tests.helpers import ServerHandle, log_failures, new_account, start_server, stop_server

schema = schemathesis.openapi.from_dict(build_spec())
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))  # per operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_target(database_url: str) -> Iterator[tuple[ServerHandle, str]]:
    # A server of its own: generated requests reserve addresses and purge inboxes.
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-schemathesis-"))
    handle = start_server(data_dir, {"DATABASE_URL": database_url})
    _, key = new_account(handle, "fuzz")  # not an admin key: admin routes answer 403
    yield handle, key
    errors = log_failures(handle.log())
    assert stop_server(handle) == 0, handle.log()
    assert not errors, handle.log()[-5000:]
    shutil.rmtree(data_dir, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case,
                                    fuzz_target: tuple[ServerHandle, str]) -> None:
    handle, key = fuzz_target
    if case.path.endswith("/wait"):
        # Long polls hold a request up to 300 s: keep generated timeouts short (invalid
        # values still go through, to check their 400).
        query = dict(case.query or {})
        with contextlib.suppress(TypeError, ValueError):
            if float(query.get("timeout", 30)) > 1:
                query["timeout"] = "1"
        case.query = query
    case.call_and_validate(base_url=handle.http_url, headers={"Mailsac-Key": key},
                           checks=CHECKS, timeout=30)
