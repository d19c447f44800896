"""Orders: every kind of control flow in one workflow.

A map prices each order (one bad order does not stop the others), a switch
sends big totals to a person for approval, a loop polls a warehouse until it
has packed everything, a sleep waits between batches, variables keep what was
decided, a group prints the labels and then, by a sub-workflow, sends the
notice, and a terminate ends early when there is nothing to ship.

Small totals run straight through::

    legato run examples/orders.py:wf

A big total waits for approval: run it, then answer it from another shell
(``legato runs show`` prints the run id and what it waits for)::

    legato run examples/orders.py:wf -p 'orders=[{"sku": "piano", "qty": 3}]' --timeout 5s
    legato runs signal RUN_ID approval --payload '{"approved": true, "by": "ada"}'
    legato worker --import examples/orders.py   # carries the run on; Ctrl-C to stop

Or as a script: ``python examples/orders.py``.
"""

import legato

PRICES = {"pen": 2, "book": 15, "lamp": 40, "piano": 4000}


@legato.task
def price(order: dict) -> dict:
    """The order with its total; an unknown product fails this item only."""
    if order["sku"] not in PRICES:
        raise ValueError(f"unknown product {order['sku']!r}")
    return {**order, "total": PRICES[order["sku"]] * order["qty"]}


@legato.task
def add_up(priced: list) -> int:
    return sum(p["total"] for p in priced if p is not None)


@legato.task
def pack(round: int, orders: int) -> dict:
    """Pretend the warehouse packs two orders per round."""
    packed = min(orders, 2 * (round + 1))
    return {"packed": packed, "done": packed >= orders}


@legato.task
def auto_approve(total: int) -> dict:
    return {"approved": True, "by": f"policy (total {total})"}


@legato.task
def print_labels(orders: int) -> int:
    return orders


@legato.task
def send(to: str, text: str) -> str:
    return f"sent to {to}: {text}"


# A small workflow of its own, called as a sub-workflow (a child run).
notify = legato.Workflow("orders_notify")
notify.outputs(
    receipt=notify.step(
        "send", send, to=notify.param("to", "shipping@example.com"), text=notify.param("text")
    ).output
)

wf = legato.Workflow("orders", version="1.0.0")
orders = wf.param(
    "orders",
    [{"sku": "pen", "qty": 10}, {"sku": "book", "qty": 2}, {"sku": "kazoo", "qty": 1}],
    type="list",
)

# Once per order, at most four at a time; a failed item leaves null in the list.
priced = wf.map(
    "price", price, over=orders, order=legato.item, max_parallel=4, continue_on_error=True
)
total = wf.step("total", add_up, priced=priced.output)
wf.terminate(
    "nothing_to_ship",
    when="${{ steps.total.output == 0 }}",
    reason="no order could be priced",
    outputs={"total": 0},
)

# Big totals wait for a person (a day at most, then they count as refused).
review = wf.switch("review", on="${{ 'big' if steps.total.output > 1000 else 'small' }}")
review.case("big").wait_for_signal(
    "approval", timeout="1d", default={"approved": False, "by": "nobody (timed out)"}
)
review.default().step("auto", auto_approve, total=total.output)
# The switch's output is its branch's: either answer has the same shape.
decided = wf.set_vars("decided", approved=review.output["approved"], by=review.output["by"])

# Poll the warehouse, a short pause between rounds, until every order is packed.
packing = wf.loop("packing", max_iterations=10, needs=[decided], when=legato.var("approved"))
packed = packing.step("pack", pack, round=legato.iteration, orders="${{ params.orders | length }}")
packing.sleep("pause", "200ms", needs=[packed])
packing.repeat_until(packed.output["done"])

# Dispatch as one step: labels first, then the notice; the group outputs the notice's.
dispatch = wf.group("dispatch", needs=[packing], output="${{ steps.notify.output }}")
labels = dispatch.step("labels", print_labels, orders="${{ params.orders | length }}")
dispatch.sub_workflow(
    "notify",
    notify,
    params={"text": "orders worth ${{ steps.total.output }} are packed"},
    after=[labels],
)
wf.outputs(total=total.output, approved_by=legato.var("by"), receipt=dispatch.output["receipt"])

if __name__ == "__main__":
    run = legato.run(wf)
    print(run.status, run.outputs)
