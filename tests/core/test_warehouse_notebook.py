"""notebooks/analytics.ipynb runs headless, top to bottom, on data from a real
count (synthetic scenes counted with the oracle detector into chDB)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analytics.ipynb"


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} not installed: CI must install the dev extras")
        pytest.skip(f"{module} not installed")


@pytest.mark.slow
def test_the_analytics_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("nbclient", "nbformat", "ipykernel", "matplotlib"):
        _require(module)
    import nbclient
    import nbformat

    monkeypatch.delenv("CAMCOUNT_WAREHOUSE_URL", raising=False)  # make its own data
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # hourly counts, peak hours, occupancy, dwell times
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "window rows" in text
