"""Regenerate the model card of a risk model on the demo population.

Generates the synthetic population, encodes and ingests it, runs one cycle
with the ruleset and evaluates the model against the ground truth (accuracy,
bias report); writes Markdown and JSON (same name, ``.json``).

    .venv/bin/python bench/model_card.py     # shipped model -> docs/model-cards/
    .venv/bin/python bench/model_card.py --households 5000 --out /tmp/card.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evaluation._modelcard import (
    DEMO_HOUSEHOLDS,
    DEMO_SEED,
    build_model_card,
    write_model_card,
)
from linkage_service.programme._riskmodel import default_model, load_model
from linkage_service.programme._ruleset import default_ruleset, load_ruleset

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    ap.add_argument("--ruleset", type=Path, help="ruleset file (default: TF Phase 2)")
    ap.add_argument("--households", type=int, default=DEMO_HOUSEHOLDS)
    ap.add_argument("--seed", type=int, default=DEMO_SEED)
    ap.add_argument("--out", type=Path, help="Markdown path (default: docs/model-cards/...)")
    args = ap.parse_args()
    model = load_model(args.model) if args.model else default_model()
    ruleset = load_ruleset(args.ruleset) if args.ruleset else default_ruleset()
    out = args.out or ROOT / "docs" / "model-cards" / f"{model.name}-{model.version}.md"
    started = time.perf_counter()
    card = build_model_card(model, ruleset, households=args.households, seed=args.seed)
    md, data = write_model_card(out, card)
    print(f"wrote {md} and {data} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
