"""Extract, transform, load: the smallest useful legato workflow.

Run it with the command line (progress drawn live, outputs printed as JSON)::

    legato run examples/etl.py:wf -p source=s3://bucket/data

or as a script: ``python examples/etl.py``.
"""

import legato


@legato.task
def extract(source: str) -> dict:
    """Pretend to read rows from ``source``."""
    return {"rows": [1, 2, 3], "source": source}


@legato.task(retries=3, backoff="exponential", retry_delay="1s", timeout="30s")
def transform(rows: list) -> list:
    return [r * 10 for r in rows]


@legato.task
def load(rows: list) -> dict:
    return {"count": len(rows)}


wf = legato.Workflow("etl", version="1.0.0")
extracted = wf.step("extract", extract, source=wf.param("source", type="str"))
transformed = wf.step("transform", transform, rows=extracted.output["rows"])
loaded = wf.step("load", load, rows=transformed.output)
wf.outputs(count=loaded.output["count"])

if __name__ == "__main__":
    run = legato.run(wf, params={"source": "s3://bucket/data"})
    print(run.status, run.outputs)  # completed {'count': 3}
