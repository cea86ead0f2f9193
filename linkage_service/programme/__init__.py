"""The programme engine: who is eligible, how at risk, what has improved, what to claim.

It reads what the matcher built (families and their members' indicators) and
never touches encodings. Where things live: the **ruleset** ``_ruleset.py``
(shipped files in ``rulesets/``), the risk model ``_riskmodel.py``
(``rulesets/models/``), assessing one family ``_programme.py``, assessment
cycles and statuses ``_assessment.py``, attestations and the blobs they
release ``_attestations.py``, opt-out and restrictions ``_restrictions.py``,
the active ruleset ``_active.py``, payment by results
``_claims.py``, the returns councils file ``_reports.py``. The programme's SQL
is in ``_store*.py`` and nowhere else: ``_store.py`` (its tables, shared reads,
statuses, attestations, restrictions, ruleset switches), ``_store_assessment.py``,
``_store_claims.py``, ``_store_reports.py``.
"""

# The public names are exported by ``linkage_service`` itself: importing them here
# would make the matcher's review queue (which assesses what-ifs) import the
# assessment cycle that imports it back.
