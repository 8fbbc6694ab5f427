"""Files that are not checkpoints (what failed downloads leave): recognised from their first bytes and named,
with how to fetch the file again, instead of a raw traceback or a misleading security message."""
import os

import pytest
import torch

from scalingar_core.models.checkpoints import CheckpointError, read_file
from scalingar_core.models.download import repo_folder
from scalingar_core.models.llamagen.adapter import load_preset
from scalingar_core.testing.llamagen import (
    tiny_preset,
    write_preset_files,
    write_tiny_t5,
)

LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146f3\nsize 3091230413\n"
HTML = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not Found</body></html>\n"

NOT_CHECKPOINTS = {
    "text": (b"these are my notes about the model\n", "a text file of 35 bytes starting 'these are my notes"),
    "lfs pointer": (LFS, "a Git LFS pointer"),
    "html page": (HTML, "an HTML page"),
    "json error": (b'{"error": "Repository Not Found"}', "JSON text"),
    "empty": (b"", "an empty file"),
    "annex pointer": (b"/annex/objects/SHA256E-s3091230413--4d7a.pt\n", "a git-annex pointer"),
}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("case", list(NOT_CHECKPOINTS))
def test_files_that_are_not_checkpoints_are_named(case, suffix, tmp_path):
    data, what = NOT_CHECKPOINTS[case]
    path = tmp_path / f"t2i_XL_stage1_256{suffix}"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        read_file(path, hint="fetch it again with `hf download x/y f.pt`")
    msg = str(err.value)
    assert f"{path} is not a checkpoint: it is {what}" in msg and "hf download x/y f.pt" in msg
    assert "pickled Python objects" not in msg


def test_damaged_bytes_are_corrupt_not_a_security_refusal(tmp_path):
    path = tmp_path / "gpt.pt"
    path.write_bytes(b"\x80\x02" + bytes(range(256)) * 4)  # starts like a pickle, then garbage
    with pytest.raises(CheckpointError, match="incomplete or corrupt") as err:
        read_file(path)
    assert "pickled Python objects" not in str(err.value)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_the_refusal_names_the_pickled_global_in_this_torch_wording(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*\(it references \w+\.getcwd\)"):
        read_file(path)


def test_a_preset_with_an_lfs_pointer_for_weights_says_so(tmp_path):
    p = tiny_preset()
    paths = write_preset_files(p, tmp_path, "llamagen", with_t5=False)
    os.symlink(write_tiny_t5(tmp_path / "t5"), repo_folder(tmp_path, p.text_encoder_repo))
    paths["gpt"].write_bytes(LFS)
    with pytest.raises(CheckpointError) as err:
        load_preset(p, models_dir=tmp_path, device="cpu")
    msg = str(err.value)
    assert "is not a checkpoint: it is a Git LFS pointer" in msg and "hf download" in msg and "git lfs pull" in msg


class _System:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_plain_pickle_is_named_as_one_without_a_torch_warning(protocol, tmp_path, recwarn):
    import pickle

    path = tmp_path / "gpt.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": _System()}, f, protocol=protocol)  # pickle.dump, not torch.save
    with pytest.raises(CheckpointError) as err:
        read_file(path)
    msg = str(err.value)
    assert "plain Python pickle (written by pickle.dump, not torch.save)" in msg and ".system" in msg
    assert "corrupt" not in msg and not [w for w in recwarn if "pickle" in str(w.message)]


def test_torch_save_files_of_both_formats_still_load(tmp_path):
    for name, zipped in (("zip.pt", True), ("legacy.pt", False)):
        torch.save({"w": torch.ones(2)}, tmp_path / name, _use_new_zipfile_serialization=zipped)
        assert torch.equal(read_file(tmp_path / name)["w"], torch.ones(2))


def test_a_corrupt_safetensors_beside_its_pt_says_delete_or_convert_not_fetch(tmp_path):
    original = tmp_path / "vq_ds16_c2i.pt"
    torch.save({"w": torch.ones(2)}, original)
    converted = tmp_path / "vq_ds16_c2i.safetensors"
    converted.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"w\": 12345}   " + bytes(40))  # a damaged header
    with pytest.raises(CheckpointError) as err:
        read_file(converted, hint="fetch it again with `hf download x/y vq_ds16_c2i.pt`")
    msg = str(err.value)
    assert f"delete it to use {original.name}" in msg and f"convert {original} {converted}" in msg
    assert "hf download" not in msg


def test_convert_refuses_a_fifo_target_and_writes_a_loadable_copy(tmp_path):
    from scalingar_core.models.checkpoints import convert_checkpoint

    src = tmp_path / "gpt.pt"
    torch.save({"model": {"w": torch.ones(2)}}, src)
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        convert_checkpoint(src, fifo)
    assert torch.equal(read_file(convert_checkpoint(src, tmp_path / "gpt.safetensors"))["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.safetensors", "gpt.pt", "gpt.safetensors"]
