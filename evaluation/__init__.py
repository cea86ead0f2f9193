"""Evaluation against synthetic ground truth: linkage quality and model cards.

For tests, benchmarks and model cards only. It generates plaintext synthetic
populations, encodes them with the agency client exactly as agencies would,
feeds the encodings to the linkage service's library code, and compares what
comes out with the generator's truth. It sits outside every service on
purpose: ``linkage_service`` never imports it (nor ``agency_client``), so no
plaintext, synthetic or real, is on any of the service's code paths.

Where things live: the harness (population, ingest, pair quality, eligibility
agreement) in ``_harness.py``; model cards and the bias report in
``_modelcard.py``; a second council population written independently of the
agency client's generator, with seven agencies' own export habits, in
``_council.py``, and its evaluation (encode, link, pair and eligibility
scores) in ``_council_eval.py``; whether extract order says anything about
households (rank correlation of position and true household) in ``_order.py``.
"""

from ._council import (
    AgencyExtract,
    CouncilConfig,
    CouncilPopulation,
    TrueHousehold,
    TruePerson,
    generate_council,
    write_council,
)
from ._council_eval import (
    CouncilScores,
    EligibilityScores,
    EncodedCouncil,
    assess_eligibility,
    encode_council,
    evaluate_council,
)
from ._harness import (
    PairScores,
    Population,
    batch_from_lines,
    completeness,
    concat,
    eligibility_agreement,
    household_overlap,
    ingest_population,
    load_population,
    pair_scores,
)
from ._modelcard import (
    AGE_BANDS,
    build_model_card,
    evaluate_model,
    model_facts,
    render_markdown,
    roc_auc,
    score_summary,
    write_model_card,
)
from ._order import (
    ExtractOrder,
    OrderSignal,
    measure_council,
    measure_synthetic,
    order_signal,
    spearman,
)

__all__ = [
    "AGE_BANDS",
    "AgencyExtract",
    "CouncilConfig",
    "CouncilPopulation",
    "CouncilScores",
    "EligibilityScores",
    "EncodedCouncil",
    "ExtractOrder",
    "OrderSignal",
    "PairScores",
    "Population",
    "TrueHousehold",
    "TruePerson",
    "assess_eligibility",
    "batch_from_lines",
    "build_model_card",
    "completeness",
    "concat",
    "eligibility_agreement",
    "encode_council",
    "evaluate_council",
    "evaluate_model",
    "generate_council",
    "household_overlap",
    "ingest_population",
    "load_population",
    "measure_council",
    "measure_synthetic",
    "model_facts",
    "order_signal",
    "pair_scores",
    "render_markdown",
    "roc_auc",
    "score_summary",
    "spearman",
    "write_council",
    "write_model_card",
]
