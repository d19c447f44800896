"""``examples/orders.py`` as its docstring tells a user to run it, with real processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from chaos.support import wait_until
from legato import Client, RunStatus, StepStatus

from .helpers import legato_command, subprocess_env

ORDERS = Path(__file__).parents[2] / "examples" / "orders.py"
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_small_orders_run_straight_through(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("run", f"{ORDERS}:wf", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "total": 50,
        "approved_by": "policy (total 50)",
        "receipt": "sent to shipping@example.com: orders worth 50 are packed",
    }
    with Client(f"sqlite:///{tmp_path / 'legato.db'}") as client:
        runs = {r.workflow: r for r in client.list_runs()}
        run = client.get(runs["orders"].id)
        child = runs["orders_notify"]
    assert run.steps["price[2]"].status is StepStatus.FAILED  # the kazoo: continue_on_error
    assert "unknown product 'kazoo'" in str(run.steps["price[2]"].error)
    assert run.steps["approval"].status is StepStatus.SKIPPED  # not the branch taken
    assert run.steps["nothing_to_ship"].status is StepStatus.SKIPPED
    assert [k for k in run.steps if re.fullmatch(r"packing\[\d+\]", k)] == [
        "packing[0]",
        "packing[1]",
    ]
    assert child.parent_run_id == run.id and child.status is RunStatus.COMPLETED


def test_a_big_order_waits_for_approval_given_from_the_shell(
    run_cli: RunCli, tmp_path: Path
) -> None:
    orders = json.dumps([{"sku": "piano", "qty": 3}])
    first = run_cli("run", f"{ORDERS}:wf", "-p", f"orders={orders}", "--timeout", "3s")
    assert first.returncode == 124, first.stderr
    assert "waits for signal 'approval'" in first.stderr
    hint = r"legato runs signal (\S+) approval --url (\S+) --payload JSON"
    answer = re.search(hint, first.stderr)
    assert answer is not None, first.stderr
    run_id = answer.group(1)

    sent = run_cli(
        "runs", "signal", run_id, "approval", "--payload", '{"approved": true, "by": "ada"}'
    )
    assert sent.returncode == 0, sent.stderr
    assert f"completed step approval of run {run_id}" in sent.stdout

    worker = subprocess.Popen(
        [*legato_command(), "worker", "--import", str(ORDERS)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(f"sqlite:///{tmp_path / 'legato.db'}") as client:
            wait_until(
                lambda: client.get(run_id, with_steps=False).finished, 60, what="the run to end"
            )
            run = client.get(run_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    assert run.status is RunStatus.COMPLETED, run
    assert run.outputs == {
        "total": 12000,
        "approved_by": "ada",
        "receipt": "sent to shipping@example.com: orders worth 12000 are packed",
    }
    assert run.variables == {"approved": True, "by": "ada"}
