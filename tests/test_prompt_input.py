"""Prompts from users: a LlamaGen prompt that cleans to nothing is an error (not a silent unconditional
image), and error messages repeat at most ~200 characters of what the user typed."""
import os

import pytest

from scalingar_core.models import registry
from scalingar_core.models.download import repo_folder
from scalingar_core.models.llamagen.adapter import load_preset
from scalingar_core.models.toy.text import tokenize
from scalingar_core.testing.llamagen import (
    tiny_preset,
    write_preset_files,
    write_tiny_t5,
)

NOVEL = "once upon a time " * 5000


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    p = tiny_preset()
    write_preset_files(p, folder, "llamagen", with_t5=False)
    os.symlink(write_tiny_t5(tmp_path_factory.mktemp("t5")), repo_folder(folder, p.text_encoder_repo))
    return load_preset(p, models_dir=folder, device="cpu")


# Each of these is empty after upstream's cleaner (captions.py reproduces it; it keeps kana such as "の", and
# the "." of "https://example.com/cat.png", so those prompts are not empty there).
@pytest.mark.parametrize("prompt", ["", "   ", "猫写真", "https://example.com/cat", "<b></b> @someone",
                                    "IMG_2024.jpg 1234567"])
def test_a_prompt_that_cleans_to_nothing_is_an_error(t2i, prompt):
    with pytest.raises(ValueError, match="empty after LlamaGen's caption cleaning.*unconditional image"):
        t2i.encode(prompt)


def test_a_real_prompt_still_encodes(t2i):
    assert t2i.encode("a photo of a cat 猫").features.shape[1] == t2i.gpt.config.cls_token_num


def test_errors_echo_at_most_about_200_characters(t2i):
    for call in (lambda: t2i.encode("https://x.org/" + "a" * 10_000), lambda: tokenize(NOVEL),
                 lambda: registry.entry(NOVEL)):
        with pytest.raises(ValueError) as err:
            call()
        assert len(str(err.value)) < 800 and "characters)" in str(err.value)
