"""The in-process decision benchmark's world: 100 web actions for one placement
(``home_hero``), 26 eligibility rules plus 4 global ones, and a gradient-boosted model
trained on synthetic customers (issue: decision engine).

``benchmarks/test_bench_engine.py`` decides in it in process. Written out, the API can
serve it over HTTP to the load test's page views::

    .venv/bin/python -m benchmarks.world_100 var/world-100
    NBA_DATA_DIR=var/world-100/data NBA_CATALOGUE=var/world-100/catalogue \\
    NBA_MODEL_DIR=var/world-100/models NBA_LOADTEST_WEB_PLACEMENTS=home_hero \\
    NBA_LOADTEST_SHOP_SHARE=0 NBA_API_CPUS=0 NBA_BACKGROUND_CPUS=1 \\
        nba loadtest --rate 1000 --duration 30 --workers 1 \\
        --caller desk=0 --caller email=0 --caller responses=0

The load test fills the store with the demo world's customers, whose features carry the
names the rules and the model read.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

from models.registry import ModelRegistry
from models.training import TrainingSet, train_model
from rules.catalogue import load_catalogue

CATEGORIES = ("shoes", "bags", "electronics", "home", "sports", "beauty")
RULE_TEXTS = [  # 26 distinct eligibility rules; with the 4 global rules: 30
    "customer.age >= {n}",
    "customer.tenure_months >= {n}",
    "customer.views_1h_{cat} >= 0 or customer.value_class == 'A'",
    "context.device != 'tv' and customer.age < {m}",
    "action.category == context.page_category or customer.orders >= {k}",
    "customer.segment in ['family', 'young_urban', 'senior', 'business']",
    "customer.region is not null or customer.age > {n}",
    "days_since(customer.last_seen) < 400 or customer.last_seen is null",
]
GLOBAL_RULES = """\
rule: consent
applies_to: action.kind != "activity"
require: customer.consent_marketing == true
---
rule: complaint
require: not (customer.open_complaint == true)
---
rule: adults
applies_to: action.kind == "offer"
require: customer.age >= 18
---
rule: premium
applies_to: action.price_band == "high"
require: customer.value_class != "C" or context.page_category == action.category
"""


def catalogue_of_100(folder: Path) -> Path:
    docs = []
    rng = random.Random(5)
    rules = [
        t.format(n=rng.randint(0, 30), m=rng.randint(60, 90), k=rng.randint(0, 3), cat=c)
        for t in RULE_TEXTS
        for c in CATEGORIES[:3]
    ][:26]
    for i in range(100):
        category = CATEGORIES[i % len(CATEGORIES)]
        kind = ("offer", "banner", "offer", "activity")[i % 4]
        docs.append(
            f"id: a-{i:03d}\nkind: {kind}\nname: Action {i}\nchannels: [web]\n"
            f"placements: [home_hero]\nvalue: {5 + i % 40}\nlever: {1 + (i % 3) / 10}\n"
            f"attributes: {{category: {category}, price_band: {('low', 'mid', 'high')[i % 3]}}}\n"
            f'eligibility: "{rules[i % len(rules)]}"\n'
        )
    (folder / "actions.yaml").write_text("---\n".join(docs))
    (folder / "rules.yaml").write_text(GLOBAL_RULES)
    return folder


def customer_features(rng: random.Random) -> dict[str, Any]:
    features: dict[str, Any] = {
        "age": rng.randint(18, 80),
        "segment": rng.choice(["family", "senior", "business"]),
        "value_class": rng.choice("ABC"),
        "tenure_months": rng.randint(0, 100),
        "consent_marketing": True,
        "consent_email": True,
        "open_complaint": False,
        "orders": rng.randint(0, 20),
        "region": rng.choice(["north", "south"]),
        "churn_risk": rng.random(),
        "clv": rng.random() * 1000,
        "last_seen": time.time() - 60,
    }
    for window in ("5m", "1h", "24h", "7d"):
        for kind in ("page_view", "product_view", "add_to_cart", "search", "purchase"):
            features[f"{kind}_{window}"] = float(rng.randint(0, 5))
        for category in CATEGORIES:
            features[f"views_{window}_{category}"] = float(rng.randint(0, 5))
    return features


def train_model_100(catalogue_folder: Path, registry: ModelRegistry) -> str:
    """Train and register the world's model on 6,000 synthetic page views; its version."""
    catalogue = load_catalogue(catalogue_folder)
    rng = random.Random(3)
    data = TrainingSet()
    for i in range(6000):
        customer = customer_features(rng)
        context = {
            "page_category": rng.choice(CATEGORIES),
            "device": "mobile",
            "channel": "web",
            "placement": "home_hero",
        }
        item = catalogue.actions[rng.randrange(len(catalogue.actions))]
        favourite = customer["views_1h_shoes"] > 2
        p = 0.02 + 0.1 * (item.view.get("category") == context["page_category"]) + 0.05 * favourite
        data.add(customer, context, item.view, int(rng.random() < p), float(i))
    version, _ = train_model(data, registry, candidates=("gbm",), source="benchmark")
    return version


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.world_100 FOLDER", file=sys.stderr)
        return 2
    root = Path(argv[0])
    folder = root / "catalogue"
    folder.mkdir(parents=True, exist_ok=True)
    catalogue_of_100(folder)
    version = train_model_100(folder, ModelRegistry(root / "models"))
    print(f"catalogue in {folder}, model {version} in {root / 'models'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
