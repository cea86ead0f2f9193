"""No plaintext identifier appears in any extract of a generated population."""

from __future__ import annotations

import pytest

from agency_client import (
    BadRowPolicy,
    encode_csv,
    generate_agency_key,
    generate_seal_keypair,
    generate_secret,
    identity_needles,
    load_agency_key,
    load_mapping,
    load_seal_public_key,
    load_secret,
    scan_extract,
)
from agency_client._synthetic import PopulationConfig, generate_population
from protocols import default_schema


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    pop = generate_population(PopulationConfig(households=150, seed=11), root / "pop")
    generate_secret(root / "keys" / "secret")
    generate_seal_keypair(root / "keys" / "unlock")
    extracts = {}
    for agency in pop.agencies:
        generate_agency_key(agency, root / "keys" / agency)
        out = root / "extracts" / f"{agency}.jsonl"
        encode_csv(
            pop.csv_paths[agency],
            load_mapping(pop.mapping_paths[agency]),
            default_schema(),
            load_secret(root / "keys" / "secret"),
            load_agency_key(root / "keys" / agency / "agency.key"),
            load_seal_public_key(root / "keys" / "unlock" / "seal.pub"),
            out,
            extract_date=PopulationConfig().extract_date,
            policy=BadRowPolicy.DROP_FIELD,
            workers=1,
        )
        extracts[agency] = out
    return pop, extracts


def test_every_agency_extract_is_free_of_plaintext(population):
    pop, extracts = population
    for agency, path in extracts.items():
        needles = identity_needles(pop.csv_paths[agency], load_mapping(pop.mapping_paths[agency]))
        assert len(needles.names) > 20 and needles.dates and needles.postcodes
        assert scan_extract(path, needles) == set(), agency


def test_truth_identities_do_not_appear_in_any_extract(population):
    """Search with the ground truth's clean identities too (not only as recorded)."""
    import csv

    from agency_client import Needles

    pop, extracts = population
    needles = Needles()
    with (pop.truth_dir / "persons.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            for key in ("given_name", "family_name", "former_family_name"):
                if len(row.get(key) or "") >= 3:
                    needles.names.add(row[key])
            needles.dates.add(row["date_of_birth"])
            for key in ("nhs_number", "ni_number", "upn"):
                if row.get(key):
                    needles.identifiers.add(row[key])
    with (pop.truth_dir / "households.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            needles.postcodes.add(row["postcode"])
    for path in extracts.values():
        assert scan_extract(path, needles) == set()
