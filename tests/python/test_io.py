"""speechlens._C.io against Python's safetensors: files our C++ writer produces read back in
Python (and byte-identical to save_file's), files Python writes read in C++, zero-copy views."""
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import speechlens as sl

io = sl._C.io

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn,
          torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.complex64,
          torch.uint16, torch.uint32, torch.uint64]


def _every_dtype() -> dict:
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        if dtype == torch.bool:
            tensors[name] = torch.rand(4, 3, generator=generator) > 0.5
        elif dtype.is_floating_point or dtype.is_complex:
            tensors[name] = torch.randn(4, 3, generator=generator).to(dtype)
        else:
            tensors[name] = torch.randint(0, 100, (4, 3), generator=generator).to(dtype)
    tensors["scalar"] = torch.tensor(1.25)
    tensors["empty"] = torch.zeros(0, 5, dtype=torch.bfloat16)
    tensors["transposed"] = torch.arange(6.0).reshape(2, 3).t()
    return tensors


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8),
                       b.contiguous().reshape(-1).view(torch.uint8))


def test_python_reads_what_cpp_wrote(tmp_path):
    tensors = _every_dtype()
    path = tmp_path / "cpp.safetensors"
    io.save_safetensors(str(path), tensors, {"format": "pt", "origin": "speechlens"})
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert _same_bits(loaded[name], tensor), name
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"format": "pt", "origin": "speechlens"}


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_cpp_writer_is_byte_identical_to_save_file(tmp_path, metadata):
    tensors = {k: v.contiguous() for k, v in _every_dtype().items()}
    save_file(tensors, str(tmp_path / "py.safetensors"), metadata=metadata)
    io.save_safetensors(str(tmp_path / "cpp.safetensors"), tensors, metadata)
    assert (tmp_path / "cpp.safetensors").read_bytes() == (tmp_path / "py.safetensors").read_bytes()


def test_cpp_reads_what_python_wrote(tmp_path):
    tensors = {k: v.contiguous() for k, v in _every_dtype().items()}
    path = tmp_path / "py.safetensors"
    save_file(tensors, str(path), metadata={"k": "v"})
    file = io.SafetensorsFile(str(path))
    assert file.names() == sorted(tensors)
    assert len(file) == len(tensors) and "scalar" in file and "absent" not in file
    assert file.metadata() == {"k": "v"}
    for name, tensor in tensors.items():
        assert file.dtype(name) == tensor.dtype
        assert file.shape(name) == list(tensor.shape)
        assert _same_bits(file[name], tensor), name
    loaded = io.load_safetensors(str(path))
    assert all(_same_bits(loaded[name], tensors[name]) for name in tensors)


def test_get_is_zero_copy_and_copy_on_write(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.arange(1024, dtype=torch.float32)}, str(path))
    file = io.SafetensorsFile.open(str(path))
    first, second = file.get("w"), file.get("w")
    assert first.data_ptr() == second.data_ptr()
    begin, size = file.data_range()
    assert begin <= first.data_ptr() and first.data_ptr() + first.nbytes <= begin + size
    before = path.read_bytes()
    first.add_(1)  # private mapping: the write is copy-on-write, visible to aliases only
    assert torch.equal(second, torch.arange(1, 1025, dtype=torch.float32))
    del file
    assert torch.equal(first, second)  # the tensors keep the mapping alive
    assert path.read_bytes() == before
    assert torch.equal(load_file(str(path))["w"], torch.arange(1024, dtype=torch.float32))


def test_errors_map_to_python_exception_types(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]")
    with pytest.raises(sl.InvalidInputError, match="does not start with"):
        io.SafetensorsFile(str(bad))
    with pytest.raises(OSError):
        io.load_safetensors(str(tmp_path / "absent.safetensors"))
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.ones(1)}, str(good))
    with pytest.raises(KeyError):
        io.SafetensorsFile(str(good)).get("b")
    with pytest.raises(ValueError, match="safetensors cannot store dtype"):
        io.save_safetensors(str(tmp_path / "c.safetensors"), {"c": torch.ones(1, dtype=torch.complex128)})
