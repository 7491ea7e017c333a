"""The committed type stubs of the extension match the extension (scripts/gen_stubs.sh)."""
import pathlib
import subprocess
import sys

import pytest

STUBS = pathlib.Path(__file__).resolve().parents[2] / "python" / "speechlens" / "_C"


def test_stubs_are_up_to_date(tmp_path):
    pytest.importorskip("pybind11_stubgen")
    subprocess.run([sys.executable, "-m", "pybind11_stubgen", "speechlens._C", "-o", str(tmp_path),
                    "--ignore-all-errors"], check=True, capture_output=True)
    fresh = {p.name: p.read_text() for p in (tmp_path / "speechlens" / "_C").glob("*.pyi")}
    committed = {p.name: p.read_text() for p in STUBS.glob("*.pyi")}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stubs out of date: {stale}; run scripts/gen_stubs.sh"
