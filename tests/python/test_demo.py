"""`speechlens demo` (what `make demo` runs) writes a report that shows something real."""
import json
import shutil

import pytest

import speechlens as sl


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make deps)")
def test_demo_writes_a_report_that_localises_the_differing_word(tmp_path):
    from speechlens import cli

    page = cli.demo(tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for image in ("whisper_patching.png", "whisper_logit_lens.png", "whisper_cross_attention.png",
                  "hubert_patching.png"):
        assert (tmp_path / "report" / image).stat().st_size > 1000
    assert page.read_text().count("<img") == 4
    whisper = report["whisper"]
    assert "mat" in whisper["transcripts"]["clean"].lower()
    assert whisper["clean_metric"] > 0 > whisper["corrupted_metric"]
    strongest = whisper["patching"]["strongest"]
    assert strongest["recovery"] > 0.5                  # one window carries most of the word
    assert 0.5 < strongest["seconds"][0] < 2.5           # and it lies inside the speech
    assert report["hubert"]["transcripts"]["clean"] == "three one four"
    assert report["hubert"]["patching"]["strongest"]["recovery"] > 0.3
