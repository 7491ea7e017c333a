"""The example notebook runs headless, every cell without error."""
import pathlib
import shutil

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebooks"
NOTEBOOK = NOTEBOOKS / "quickstart.ipynb"


def _execute(path, workdir):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return nb


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make deps)")
def test_quickstart_notebook_executes(tmp_path):
    nb = _execute(NOTEBOOK, tmp_path)
    transcript = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "cat" in transcript.lower()


def test_analysis_notebook_runs_every_method(tmp_path):
    nb = _execute(NOTEBOOKS / "analysis.ipynb", tmp_path)
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    for marker in ("patching:", "attribution vs activation corr:", "logit lens top-1", "encoder lens transcripts:",
                   "shuffled control", "most selective neurons", "CKA between encoder layers"):
        assert marker in text
    assert (tmp_path / "quickstart_patching.png").exists()
