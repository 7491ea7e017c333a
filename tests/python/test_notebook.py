"""The example notebook runs headless, every cell without error."""
import pathlib
import shutil

import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "quickstart.ipynb"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make deps)")
def test_quickstart_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    transcript = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "cat" in transcript.lower()
