"""The notebooks run top to bottom (small sizes: TCUPGAN_QUICK=1), so they cannot rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TCUPGAN_QUICK", "1")
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), "strip outputs"
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    images = [
        o for c in book.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert images, "each notebook shows at least one figure"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


def test_notebooks_use_the_front_door():
    """Notebooks import tcupgan's functions from ``tcupgan`` itself (its front door), and the Zooniverse
    test doubles from ``tcupgan.zooniverse.testing``: nothing reaches into the modules behind them."""
    import re

    import tcupgan

    for path in NOTEBOOKS:
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for module, names in re.findall(r"from (tcupgan[\w.]*) import ([\w, ]+)", code):
            assert module in ("tcupgan", "tcupgan.zooniverse.testing"), (path.name, module)
            if module == "tcupgan":
                assert {n.strip() for n in names.split(",")} <= set(tcupgan.__all__), path.name
