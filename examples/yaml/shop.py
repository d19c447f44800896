"""Tasks the YAML examples in this folder call (``uses: shop.<name>``).

Run any example with its tasks imported::

    legato run examples/yaml/etl.yaml --import examples/yaml/shop.py -p day=2024-05-01
"""

from __future__ import annotations

import random
from typing import Any

import legato

_STOCK = {"pen": 120, "book": 3, "kazoo": 0, "piano": 1}
_PRICES = {"pen": 1.5, "book": 12.0, "kazoo": 4.0, "piano": 3000.0}


@legato.task(name="shop.fetch_orders")
def fetch_orders(region: str, day: str) -> list[dict[str, Any]]:
    """The orders placed in a region on a day (made up, the same each time)."""
    picked = random.Random(f"{region}/{day}")
    skus = sorted(_PRICES)
    return [{"sku": picked.choice(skus), "qty": picked.randint(1, 3)} for _ in range(3)]


@legato.task(name="shop.price")
def price(order: dict[str, Any]) -> float:
    """What an order costs."""
    return round(_PRICES[order["sku"]] * order["qty"], 2)


@legato.task(name="shop.total")
def total(amounts: list[float | None]) -> float:
    """The sum of the amounts that are known."""
    return round(sum(a for a in amounts if a is not None), 2)


@legato.task(name="shop.in_stock")
def in_stock(sku: str) -> int:
    """How many of an item are on the shelf."""
    return _STOCK.get(sku, 0)


@legato.task(name="shop.restock", retries=2, retry_delay=0.1)
def restock(sku: str, attempt_note: str = "") -> dict[str, Any]:
    """Order more of an item from the supplier."""
    return {"sku": sku, "ordered": 10, "note": attempt_note}


@legato.task(name="shop.ship")
def ship(sku: str, carrier: str = "post") -> str:
    """Hand an item to a carrier; returns the tracking id."""
    return f"{carrier}-{sku}-{len(sku) * 7}"


@legato.task(name="shop.pack")
def pack(round: int, boxes: int = 0) -> int:
    """Pack one more box; returns how many are packed."""
    return boxes + 1


@legato.task(name="shop.report")
def report(**facts: Any) -> dict[str, Any]:
    """Put what a run found into one record."""
    return dict(sorted(facts.items()))
