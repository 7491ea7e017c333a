import torch

import speechlens as sl


def test_version_and_torch_match():
    assert sl.__version__ == "0.1.0"
    assert sl._C.torch_version().split("+")[0] == torch.__version__.split("+")[0]
