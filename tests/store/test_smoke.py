from __future__ import annotations

import legato


@legato.task
def smoke_double(x: int) -> int:
    return x * 2


def test_chain_completes_on_each_backend(db_url: str) -> None:
    wf = legato.Workflow("smoke")
    a = wf.step("a", smoke_double, x=wf.param("x"))
    b = wf.step("b", smoke_double, x=a.output)
    wf.outputs(result=b.output)
    run = legato.run(wf, {"x": 3}, url=db_url)
    assert run.status == "completed"
    assert run.outputs == {"result": 12}
    assert [s.status for s in run.steps.values()] == ["completed", "completed"]
