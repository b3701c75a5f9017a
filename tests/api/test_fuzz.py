"""A bounded schemathesis run over /openapi.json, in process: no 500s, no schema violations.

(The ``from_fixture`` pytest loader does not work with pytest 9 yet, so the operations are driven
with hypothesis directly; the checks are schemathesis' own.)
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.builders import make_wheel
from tests.support.forms import upload_form

EXAMPLES = 25
# A schema-valid upload form is not a valid distribution (the bytes must be a real wheel or sdist whose
# name, version and digests agree), so "valid data must be accepted" cannot hold for uploads; every
# other check (no 5xx, documented status codes and media types, response schemas) still applies. The
# same for pip search's XML-RPC body: a string, of which only an XML-RPC method call is accepted.
SEMANTIC = {"upload_legacy", "upload_root", "search_rpc2", "search_rpc_pypi"}


def test_every_operation_conforms_to_the_schema_and_never_errors(client, tmp_path):
    # Something to find: a project with a file, so the management routes also reach their happy paths.
    data, files = upload_form(make_wheel(tmp_path, "demo", "1.0"))
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        semantic = operation.definition.raw.get("operationId") in SEMANTIC
        fuzz_operation(operation, [positive_data_acceptance] if semantic else [])


def fuzz_operation(operation, excluded: list) -> None:
    @given(case=operation.as_strategy())
    # CI runs a fixed sample (a red CI must be reproducible); local runs explore new examples each time.
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
        derandomize=bool(os.environ.get("CI")),
    )  # fmt: skip
    def fuzz(case):
        case.call_and_validate(excluded_checks=excluded)

    fuzz()
