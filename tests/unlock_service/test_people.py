"""A release groups the family's agency records into people (release format v2), from the
signed attestation's person ids, and says which agency knew each; v1 releases still open."""

from __future__ import annotations

import base64
import errno
import json

import httpx
import pytest
from nacl.public import SealedBox
from nacl.signing import SigningKey
from pydantic import ValidationError

from protocols import (
    AgencyRecord,
    IdentityPayload,
    ReleasedAnswer,
    ReleasedPerson,
    ReleasedRecord,
    ReleaseV1,
    ReleaseV2,
    write_private_file,
)
from unlock_service import (
    ReleaseError,
    describe_release,
    open_release,
    open_release_body,
)
from unlock_service._cli import main

from ._factories import IDENTITIES

WHY = "child seen with injuries at school"
# six records of three people: the first known to three agencies, the second to two
AGENCIES = ["school", "police", "health", "school", "police", "school"]
PERSONS = [0, 0, 0, 1, 1, 2]


def _family(env):
    family = env.add_family(
        members=6, agencies=AGENCIES, identities=PERSONS, persons=PERSONS, clearance=3
    )
    attestation = env.linkage.families[family].signed.attestation
    return family, attestation


def _release(env, pro, family):
    r = env.client(pro).unlock(family, "SAFEGUARDING", WHY)
    assert r.status_code == 200, r.text
    return ReleasedAnswer.model_validate_json(r.content)


def test_records_of_one_person_are_grouped_with_the_agencies_that_knew_them(env):
    pro = env.add_pro("social_worker", 5)
    family, attestation = _family(env)
    answer = _release(env, pro, family)
    assert answer.release_format == "family-linkage/release/v2"
    assert (answer.identity_count, answer.person_count) == (6, 3)
    release = open_release_body(answer.sealed_identities, pro.key, answer.request_id)
    assert isinstance(release, ReleaseV2)
    # the person ids are exactly the signed attestation's
    attested = {(m.agency_id, m.record_ref): m.person_id for m in attestation.members}
    assert {
        (r.identity.agency_id, r.identity.record_ref): r.person_id for r in release.records
    } == (attested)
    people = {p.person_id: p for p in release.people}
    assert len(people) == 3
    first = attestation.members[0].person_id
    assert {r.agency_id for r in people[first].records} == {"school", "police", "health"}
    assert len(people[first].records) == 3
    grouped = {p.person_id: ids for p, ids in release.person_identities()}
    assert {i.given_names for i in grouped[first]} == {IDENTITIES[0]["given_names"]}
    sizes = sorted(len(ids) for ids in grouped.values())
    assert sizes == [1, 2, 3]
    # the v1 view still lists every record
    assert len(open_release(answer.sealed_identities, pro.key, answer.request_id)) == 6


def test_the_description_shows_one_block_per_person(env):
    pro = env.add_pro("social_worker", 5)
    family, attestation = _family(env)
    answer = _release(env, pro, family)
    text = describe_release(open_release_body(answer.sealed_identities, pro.key, answer.request_id))
    assert "3 people in 6 agency records from 3 agencies" in text
    blocks = text.split("\nperson ")[1:]
    assert len(blocks) == 3
    first = next(b for b in blocks if attestation.members[0].person_id in b)
    assert "known to health, police, school" in first
    assert first.count(IDENTITIES[0]["given_names"]) == 3
    assert IDENTITIES[1]["given_names"] not in first


def _key_file(path, key):
    write_private_file(
        path,
        json.dumps(
            {
                "format": "family-linkage/professional-key/v1",
                "signing_seed": base64.b64encode(bytes(key)).decode(),
                "public_key": base64.b64encode(bytes(key.verify_key)).decode(),
            }
        ),
    )
    return path


def test_the_cli_opens_a_saved_answer_person_by_person(env, tmp_path, capsys):
    pro = env.add_pro("social_worker", 5)
    family, _ = _family(env)
    answer = _release(env, pro, family)
    key_file = _key_file(tmp_path / "pro.key", pro.key)
    saved = tmp_path / "answer.json"
    saved.write_text(answer.model_dump_json())
    assert main(["open-release", "--key", str(key_file), "--answer", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "3 people in 6 agency records" in out and answer.reason_text in out
    out_file = tmp_path / "release.txt"
    assert main(["open-release", "--key", str(key_file), "--answer", str(saved), "--out",
                 str(out_file)]) == 0  # fmt: skip
    assert out_file.stat().st_mode & 0o077 == 0
    assert "known to health, police, school" in out_file.read_text()


def test_a_saved_answer_does_not_open_with_another_key(env, tmp_path, capsys):
    pro, other = env.add_pro("social_worker", 5), env.add_pro("social_worker", 5)
    family, _ = _family(env)
    saved = tmp_path / "answer.json"
    saved.write_text(_release(env, pro, family).model_dump_json())
    key_file = _key_file(tmp_path / "other.key", other.key)
    assert main(["open-release", "--key", str(key_file), "--answer", str(saved)]) == 2
    out, err = capsys.readouterr()
    assert "the release does not open with this key" in err
    assert IDENTITIES[0]["given_names"] not in out + err


def _redeem_args(tmp_path, answer):
    key_file = _key_file(tmp_path / "pro.key", SigningKey(b"k" * 32))
    write_private_file(tmp_path / "pro.token", "a.token.here\n")
    # port 9 (discard): nothing answers there
    return ["release", "--url", "http://127.0.0.1:9", "--key", str(key_file),
            "--token-file", str(tmp_path / "pro.token"), "--answer", str(answer)]  # fmt: skip


def test_release_refuses_an_existing_answer_file_before_asking_the_service(tmp_path, capsys):
    answer = tmp_path / "release.json"
    answer.write_text("an earlier release")
    args = [*_redeem_args(tmp_path, answer), "--request", "req_" + "a" * 32]
    assert main(args) == 2
    assert "release.json already exists" in capsys.readouterr().err
    assert answer.read_text() == "an earlier release"


def test_release_leaves_no_answer_file_when_nothing_was_released(tmp_path, capsys):
    answer = tmp_path / "out" / "release.json"
    args = _redeem_args(tmp_path, answer)
    assert main([*args, "--request", "req_" + "a" * 32]) == 2
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert not answer.exists()
    assert main([*args, "--request", "req_../x"]) == 2
    assert "is not a request id" in capsys.readouterr().err


class _AnsweringClient:
    """UnlockClient's stand-in: answers ``release`` with ``body`` (status 200)."""

    body = b""

    def __init__(self, *_args: object) -> None:
        pass

    def __enter__(self) -> _AnsweringClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def release(self, _request_id: str) -> httpx.Response:
        return httpx.Response(200, content=self.body)


@pytest.mark.parametrize("disk_full", [False, True])
def test_release_saves_the_sealed_answer_then_opens_it(
    env, tmp_path, capsys, monkeypatch, disk_full
):
    pro = env.add_pro("social_worker", 5)
    family, _ = _family(env)
    released = _release(env, pro, family)
    monkeypatch.setattr(_AnsweringClient, "body", released.model_dump_json().encode())
    monkeypatch.setattr("unlock_service._cli.UnlockClient", _AnsweringClient)
    if disk_full:

        def no_space(_fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("unlock_service._cli.os.fsync", no_space)
    args = _redeem_args(tmp_path, tmp_path / "release.json")
    args[args.index("--key") + 1] = str(_key_file(tmp_path / "mine.key", pro.key))
    assert main([*args, "--request", released.request_id]) == 0
    out, err = capsys.readouterr()
    # the grant is used once: whatever happens to the file, the answer is opened
    assert "3 people in 6 agency records" in out
    assert (tmp_path / "release.json").exists()  # kept, even when its write failed
    if disk_full:
        assert "could not be saved" in err and "No space left on device" in err
        assert "is saved in" not in out
    else:
        assert (tmp_path / "release.json").read_bytes() == _AnsweringClient.body
        assert "sealed to your key, is saved in" in out and err == ""


def _seal(pro, body):
    sealed = SealedBox(pro.key.verify_key.to_curve25519_public_key()).encrypt(
        json.dumps(body).encode()
    )
    return base64.b64encode(sealed).decode()


def _identity(agency="school", ref="a" * 32):
    return IdentityPayload(
        agency_id=agency, extract_id="e" * 32, record_ref=ref, system_id="S1", given_names="Ada"
    )


def test_a_v1_release_still_opens(env):
    pro = env.add_pro()
    request_id = "req_" + "1" * 32
    v1 = ReleaseV1(request_id=request_id, family_id="fam_" + "2" * 16, identities=(_identity(),))
    sealed = _seal(pro, v1.model_dump(mode="json"))
    assert [i.given_names for i in open_release(sealed, pro.key, request_id)] == ["Ada"]
    body = open_release_body(sealed, pro.key, request_id)
    assert isinstance(body, ReleaseV1)
    assert "1 agency records (not grouped into people)" in describe_release(body)


@pytest.mark.parametrize(
    "body",
    [
        {"format": "family-linkage/release/v9"},
        {"format": "family-linkage/release/v2", "identities": []},
        {"format": "family-linkage/release/v1", "identities": [{"agency_id": "x"}]},
    ],
    ids=["unknown_format", "v2_without_people", "v1_malformed_identity"],
)
def test_unreadable_releases_are_refused(env, body):
    pro = env.add_pro()
    request_id = "req_" + "1" * 32
    body = {"request_id": request_id, "family_id": "fam_" + "2" * 16, **body}
    with pytest.raises(ReleaseError) as caught:
        open_release_body(_seal(pro, body), pro.key, request_id)
    assert caught.value.reason == "BAD_RELEASE"


P1, P2 = "per_" + "1" * 16, "per_" + "2" * 16
A, B = _identity("school", "a" * 32), _identity("police", "b" * 32)


def _rec(identity):
    return AgencyRecord(agency_id=identity.agency_id, record_ref=identity.record_ref)


@pytest.mark.parametrize(
    "people",
    [
        (ReleasedPerson(person_id=P1, records=(_rec(A),)),),  # a record left out
        (ReleasedPerson(person_id=P1, records=(_rec(A), _rec(B))),),  # B under the wrong person
        (
            ReleasedPerson(person_id=P1, records=(_rec(A),)),
            ReleasedPerson(person_id=P2, records=(_rec(B), _rec(B))),  # listed twice
        ),
        (
            ReleasedPerson(person_id=P1, records=(_rec(A),)),
            ReleasedPerson(person_id=P1, records=(_rec(A),)),  # person twice, B missing
        ),
    ],
    ids=["missing_record", "wrong_person", "duplicated_record", "duplicated_person"],
)
def test_people_must_group_exactly_the_released_records(people):
    records = (ReleasedRecord(person_id=P1, identity=A), ReleasedRecord(person_id=P2, identity=B))
    with pytest.raises(ValidationError):
        ReleaseV2(
            request_id="req_" + "1" * 32,
            family_id="fam_" + "2" * 16,
            records=records,
            people=people,
        )
    good = (
        ReleasedPerson(person_id=P1, records=(_rec(A),)),
        ReleasedPerson(person_id=P2, records=(_rec(B),)),
    )
    ReleaseV2(
        request_id="req_" + "1" * 32, family_id="fam_" + "2" * 16, records=records, people=good
    )
