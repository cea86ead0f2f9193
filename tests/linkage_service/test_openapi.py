"""The OpenAPI schema describes what the routes answer: named, closed response models.

A web front end generates its client from ``/openapi.json``; a route whose
answer is ``dict[str, Any]`` shows up there as an empty schema. These tests
keep every JSON route typed, except the few listed with the reason they are not.
"""

from __future__ import annotations

from typing import Any

import pytest

from linkage_service._api import create_app
from linkage_service._config import Settings

from ._factories import write_tokens

# (method, path) -> the component its 200 answer must be
TYPED = {
    ("get", "/persons"): "PersonPage",
    ("get", "/persons/{person_id}"): "PersonView",
    ("get", "/records/{agency_id}/{record_ref}/links"): "RecordLinks",
    ("get", "/ids/{any_id}"): "IdResolution",
    ("get", "/households"): "HouseholdPage",
    ("get", "/households/{household_id}"): "HouseholdView",
    ("get", "/review"): "ReviewQueue",
    ("get", "/review/summary"): "ReviewSummary",
    ("get", "/review/decisions"): "DecisionList",
    ("post", "/review/{record_a}/{record_b}/decision"): "DecisionView",
    ("get", "/runs"): "RunList",
    ("get", "/runs/{run_id}"): "RunView",
    ("get", "/stats"): "LinkageStatistics",
    ("get", "/programme"): "ProgrammeView",
    ("post", "/programme/ruleset"): "RulesetSwitched",
    ("post", "/assessments"): "CycleStats",
    ("get", "/assessments"): "CycleList",
    ("get", "/families"): "FamilyPage",
    ("get", "/families/{family_id}"): "FamilyView",
    ("get", "/families/{family_id}/outcomes"): "FamilyOutcomes",
    ("post", "/families/{family_id}/status"): "StatusView",
    ("post", "/families/{family_id}/lead-professional"): "LeadProfessionalView",
    ("get", "/families/{family_id}/attestation"): "SignedAttestation",
    ("get", "/families/{family_id}/blobs"): "FamilyBlobs",
    ("post", "/subject-access"): "SubjectAccessAnswer",
    ("get", "/claims"): "ClaimList",
    ("post", "/claims"): "ClaimBatch",
    ("get", "/restrictions"): "RestrictionList",
    ("put", "/restrictions/{family_id}"): "RestrictionSet",
    ("delete", "/restrictions/{family_id}"): "RestrictionLifted",
    ("get", "/reports/{name}"): "ReportView",
    ("get", "/health"): "HealthView",
    ("get", "/uploads/{upload_id}"): "UploadStatus",
    ("patch", "/uploads/{upload_id}"): "UploadStatus",
}
# Routes that answer 201 Created with a named component, and 204 No Content.
CREATED = {("post", "/uploads"): "UploadStatus"}
NO_CONTENT = {("delete", "/uploads/{upload_id}")}
# JSON routes that still answer an open mapping, and why:
UNTYPED = {
    # the run summary: the run's own counters, which grow with the engine (open by design)
    ("post", "/extracts"),
    ("post", "/uploads/{upload_id}/complete"),  # the same run summary
}
# Routes that answer a file, not JSON.
FILES = {("get", "/claims/export"), ("get", "/export/{kind}")}
# Components that are a union of named components, told apart by a tag (a report answers
# the model of the report it is).
UNIONS = {"ReportView": "report"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # building the schema is slow: once for the module (the tests only read it)
    tmp_path = tmp_path_factory.mktemp("openapi")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
    )
    out: dict[str, Any] = create_app(settings).openapi()
    return out


def _operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op for path, item in schema["paths"].items() for method, op in item.items()
    }


def _json_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        op["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema")
    )
    return found


def test_every_route_is_accounted_for(schema):
    assert set(_operations(schema)) == set(TYPED) | set(CREATED) | NO_CONTENT | UNTYPED | FILES


def test_created_and_no_content_routes(schema):
    ops = _operations(schema)
    for route, name in CREATED.items():
        got = ops[route]["responses"]["201"]["content"]["application/json"]["schema"]
        assert got == {"$ref": f"#/components/schemas/{name}"}
    for route in NO_CONTENT:
        assert "204" in ops[route]["responses"]


@pytest.mark.parametrize(("route", "name"), sorted(TYPED.items()), ids=lambda v: str(v))
def test_read_routes_answer_a_named_component(schema, route, name):
    got = _json_schema(_operations(schema)[route])
    assert got == {"$ref": f"#/components/schemas/{name}"}
    components = schema["components"]["schemas"]
    if name in UNIONS:
        component = components[name]
        assert component["discriminator"]["propertyName"] == UNIONS[name]
        members = [ref["$ref"].rsplit("/", 1)[1] for ref in component["oneOf"]]
        assert sorted(component["discriminator"]["mapping"].values()) == sorted(
            f"#/components/schemas/{m}" for m in members
        )
    else:
        members = [name]
    for member in members:
        assert components[member]["properties"], member
        assert components[member].get("additionalProperties") is False, member


def test_nested_views_are_named_components_too(schema):
    components = schema["components"]["schemas"]
    # one class per name: two models both called RecordRef would get module-qualified names
    assert all(name.isidentifier() and "__" not in name for name in components)
    pair = components["ReviewPair"]["properties"]["a"]
    assert pair == {"$ref": "#/components/schemas/RecordRef"}
    family = components["FamilyView"]["properties"]
    assert family["latest"] == {"$ref": "#/components/schemas/FamilySnapshot"}
    assert components["FamilySnapshot"]["additionalProperties"] is False
    # the JSON key is "from", whatever the model calls the field
    assert "from" in components["StatusChangeView"]["properties"]
    stats = components["LinkageStatistics"]["properties"]["active_records_by_agency"]
    assert stats["additionalProperties"] == {"type": "integer"}
    # a claim's evidence and an outcome plan's evaluation are closed shapes, not open JSON
    evidence = components["ClaimView"]["properties"]["evidence"]
    assert evidence["anyOf"] == [
        {"$ref": "#/components/schemas/AttachmentEvidence"},
        {"$ref": "#/components/schemas/FamilyOutcomes"},
    ]
    problems = components["FamilyOutcomes"]["properties"]["problems"]
    assert problems["additionalProperties"] == {"$ref": "#/components/schemas/ProblemOutcome"}
    for name in (
        "ProblemOutcome",
        "ConditionOutcome",
        "Observation",
        "EvidenceEvent",
        "CycleStats",
    ):
        assert components[name]["additionalProperties"] is False, name
    assert components["CycleView"]["properties"]["stats"] == {
        "$ref": "#/components/schemas/CycleStats"
    }


def test_every_reference_names_a_component(schema):
    components = schema["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            here = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return here + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(schema)
    assert found
    prefix = "#/components/schemas/"
    assert all(r.startswith(prefix) and r[len(prefix) :] in components for r in found)


@pytest.mark.parametrize("route", sorted(UNTYPED), ids=str)
def test_untyped_routes_are_the_listed_ones(schema, route):
    # if one of these gains a model, move it to TYPED
    got = _json_schema(_operations(schema)[route])
    assert got is not None and "$ref" not in got


def test_every_report_is_documented_with_its_columns(schema):
    from linkage_service.programme import _reports as reports

    components = schema["components"]["schemas"]
    mapping = components["ReportView"]["discriminator"]["mapping"]
    # the tag of a report is its name with underscores (work-list answers "work_list")
    assert set(mapping) == {name.replace("-", "_") for name in reports.REPORTS}
    columns = {}
    for tag, ref in mapping.items():
        report = components[ref.rsplit("/", 1)[1]]
        assert report["properties"]["report"]["const"] == tag
        assert set(report["required"]) >= {"report", "cycle", "rows"}
        row = report["properties"]["rows"]["items"]["$ref"].rsplit("/", 1)[1]
        columns[tag] = list(components[row]["properties"])
    assert columns["work_list"] == [
        "position",
        "family_id",
        "score",
        "rank",
        "percentile",
        "problem_points",  # with ?problem= only: not required
        "n_problems",
        "problems",
        "top_reasons",
        "step",
        "status",
        "district",
    ]
    assert "problem_points" not in components["WorkListRow"]["required"]
    assert columns["status"] == [
        "district",
        "identified",
        "attached",
        "in_progress",
        "pending_claim",
        "claimed",
        "closed",
        "not_eligible",
        "no_status",
        "total",
    ]
    op = _operations(schema)[("get", "/reports/{name}")]
    path_name = next(p for p in op["parameters"] if p["name"] == "name")
    assert all(name in path_name["description"] for name in reports.REPORTS)
    cusp = components["CuspRow"]["properties"]
    assert cusp["kind"]["enum"] == ["unlock", "eligibility", "indicator"]
    # a measured value stays an int when it was one (a score against the unlock threshold)
    assert cusp["value"]["anyOf"] == [{"type": "integer"}, {"type": "number"}]


def test_csv_report_is_described(schema):
    content = _operations(schema)[("get", "/reports/{name}")]["responses"]["200"]["content"]
    assert "text/csv" in content


def test_bulk_export_is_described_as_ndjson_or_parquet(schema):
    op = _operations(schema)[("get", "/export/{kind}")]
    assert set(op["responses"]["200"]["content"]) == {
        "application/x-ndjson",
        "application/vnd.apache.parquet",
    }
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["kind"]["enum"] == ["persons", "households", "families", "links", "review"]
    assert params["format"]["anyOf"][0]["enum"] == ["ndjson", "parquet"]
