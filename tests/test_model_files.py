"""Model files: what the model lists offer, what a download fetches (allow-patterns, sizes from a fake Hub
before anything is fetched), and the Comfy Registry's [tool.comfy] Models list."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from scalingar_core.models import download, registry
from scalingar_core.models.download import (
    ModelFileError,
    describe_plan,
    download_plan,
    ensure_snapshot,
    hub_sizes,
    selected_files,
)
from scalingar_core.models.llamagen.presets import PRESETS, T2I_REPO, T5_REPO

ROOT = Path(__file__).resolve().parents[1]

# google/flan-t5-xl as the Hub lists it: the same weights in four formats (sizes illustrative).
FLAN_T5_XL = {
    ".gitattributes": 1_500, "README.md": 50_000, "config.json": 1_400, "generation_config.json": 150,
    "special_tokens_map.json": 2_200, "spiece.model": 792_000, "tokenizer.json": 2_400_000,
    "tokenizer_config.json": 2_500,
    "model-00001-of-00002.safetensors": 9_450_000_000, "model-00002-of-00002.safetensors": 1_950_000_000,
    "model.safetensors.index.json": 53_000,
    "pytorch_model-00001-of-00002.bin": 9_450_000_000, "pytorch_model-00002-of-00002.bin": 1_950_000_000,
    "pytorch_model.bin.index.json": 50_000,
    "tf_model-00001-of-00002.h5": 9_400_000_000, "tf_model-00002-of-00002.h5": 2_000_000_000,
    "tf_model.h5.index.json": 40_000,
    "flax_model-00001-of-00002.msgpack": 9_450_000_000, "flax_model-00002-of-00002.msgpack": 1_950_000_000,
    "flax_model.msgpack.index.json": 40_000,
}
LLAMAGEN_T2I = {"t2i_XL_stage1_256.pt": 3_100_000_000, "t2i_XL_stage2_512.pt": 3_100_000_000,
                "vq_ds16_t2i.pt": 287_900_000, "README.md": 2_000}


class FakeHub:
    """An HfApi stand-in: model_info(files_metadata=True) returns the listings above."""

    def __init__(self, repos=None, fail=False):
        self.repos = repos if repos is not None else {T5_REPO: FLAN_T5_XL, T2I_REPO: LLAMAGEN_T2I}
        self.fail = fail
        self.calls = []

    def model_info(self, repo_id, files_metadata=False, timeout=None):
        self.calls.append(repo_id)
        if self.fail:
            raise ConnectionError("network unreachable")
        assert files_metadata, "sizes need files_metadata=True"
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=s)
                                         for n, s in self.repos[repo_id].items()])


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


# ----------------------------------------------------------------------------- what the lists offer

@pytest.mark.parametrize("path, expected", [
    ("/m/t2i_XL_stage1_256.pt", True), ("/m/sub/c2i_L_384.safetensors", True),
    ("/m/CSshihao--AR-GRPO_T2I_XL_256/model.safetensors", False),  # AR-GRPO: only with its config.json
    ("/m/model.safetensors", False), ("/m/vq_ds16_t2i.pt", False), ("/m/my_finetune.safetensors", False),
    ("/m/notes.txt", False)])
def test_registry_recognises_only_files_a_family_can_load(path, expected):
    assert registry.recognises(path) is expected


# ----------------------------------------------------------------------------- allow-patterns

def test_text_encoder_patterns_fetch_one_weight_format_only():
    p = PRESETS["llamagen-t2i-xl-512"]
    chosen = selected_files(FLAN_T5_XL, list(p.text_encoder_patterns))
    assert chosen == sorted(["config.json", "special_tokens_map.json", "spiece.model", "tokenizer.json",
                             "tokenizer_config.json", "model-00001-of-00002.safetensors",
                             "model-00002-of-00002.safetensors", "model.safetensors.index.json"])
    assert sum(FLAN_T5_XL[n] for n in chosen) < 0.3 * sum(FLAN_T5_XL.values())  # a quarter of the repository
    t5 = [f for f in p.files() if f["role"] == "text_encoder"]
    assert t5 and t5[0]["patterns"] == list(p.text_encoder_patterns)  # the registry entry says the same
    assert PRESETS["llamagen-c2i-b-256"].files()[-1]["role"] == "vq"  # c2i has no text encoder to fetch


def test_snapshot_download_gets_the_presets_patterns_and_refuses_none(tmp_path, monkeypatch, online):
    import huggingface_hub

    got = {}

    def fake_snapshot(repo_id, local_dir=None, allow_patterns=None, **kw):
        got["patterns"] = allow_patterns
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for name in selected_files(FLAN_T5_XL, allow_patterns):  # what the real one would write
            Path(local_dir, name).write_bytes(b"x")
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    p = PRESETS["llamagen-t2i-xl-512"]
    folder = ensure_snapshot(T5_REPO, tmp_path, p.text_encoder_patterns, download=True)
    assert got["patterns"] == list(p.text_encoder_patterns)
    written = sorted(f.name for f in folder.iterdir())
    assert not any(n.endswith((".bin", ".h5", ".msgpack")) for n in written) and "config.json" in written
    with pytest.raises(ValueError, match="allow-patterns"):
        ensure_snapshot("org/other", tmp_path, None, download=True)


# ----------------------------------------------------------------------------- sizes before a download

def test_plan_lists_missing_files_with_the_hubs_sizes(tmp_path, online):
    hub = FakeHub()
    plan = download_plan(registry.entry("llamagen-t2i-xl-512").files, tmp_path, api=hub)
    names = [(f["repo_id"], f["filename"]) for f in plan]
    assert names[:2] == [(T2I_REPO, "t2i_XL_stage2_512.pt"), (T2I_REPO, "vq_ds16_t2i.pt")]
    t5 = [f["filename"] for f in plan if f["repo_id"] == T5_REPO]
    assert t5 == selected_files(FLAN_T5_XL, list(PRESETS["llamagen-t2i-xl-512"].text_encoder_patterns))
    assert all(f["exact"] for f in plan)
    assert sum(f["size"] for f in plan) == 3_100_000_000 + 287_900_000 + sum(FLAN_T5_XL[n] for n in t5)
    assert sorted(hub.calls) == sorted([T2I_REPO, T5_REPO])  # one metadata request per repository
    text = describe_plan(plan, tmp_path)
    assert text.startswith(f"downloading {len(plan)} file(s), 14.79 GB, into {tmp_path}:")
    assert f"{T2I_REPO}/t2i_XL_stage2_512.pt  3.10 GB" in text and "spiece.model  0.8 MB" in text


def test_plan_skips_what_is_on_disk(tmp_path, online):
    folder = tmp_path / "peizesun--llamagen_t2i"
    folder.mkdir()
    (folder / "t2i_XL_stage2_512.safetensors").write_bytes(b"x")  # a converted copy counts
    (tmp_path / "vq_ds16_t2i.pt").write_bytes(b"x")  # so does a file dropped into the models folder
    t5 = tmp_path / "google--flan-t5-xl"
    t5.mkdir()
    (t5 / "config.json").write_text("{}")
    assert download_plan(registry.entry("llamagen-t2i-xl-512").files, tmp_path, api=FakeHub()) == []


def test_plan_falls_back_to_estimates_offline_or_unreachable(tmp_path, monkeypatch):
    files = registry.entry("llamagen-t2i-xl-256").files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = FakeHub()
    offline = download_plan(files, tmp_path, api=hub)
    assert hub.calls == []  # HF_HUB_OFFLINE: not even a metadata request
    assert [f["size"] for f in offline] == [f["size"] for f in files] and not any(f["exact"] for f in offline)
    assert "about " in describe_plan(offline, tmp_path) and "~" in describe_plan(offline, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert download_plan(files, tmp_path, api=FakeHub(fail=True)) == offline
    assert hub_sizes(T2I_REPO, FakeHub(fail=True)) is None


@pytest.mark.parametrize("listing", [
    {"config.json": 1_200, "model.safetensors": 3_400_000_000, "README.md": 900},
    {"config.json": 1_200, "model.safetensors.index.json": 90_000, "model-00001-of-00002.safetensors": 5_000_000_000,
     "model-00002-of-00002.safetensors": 1_800_000_000}])
def test_ar_grpo_plan_is_its_config_and_weights_single_or_sharded(tmp_path, online, listing):
    repo = "CSshihao/AR-GRPO_C2I_XL_384"
    hub = FakeHub({repo: listing})
    plan = download_plan(registry.entry("ar-grpo-c2i-xl-384").files, tmp_path, api=hub)
    assert plan == [{"repo_id": repo, "filename": n, "size": listing[n], "exact": True}
                    for n in sorted(listing) if n != "README.md"]  # the VQ travels inside the weights


def test_cli_download_shows_sizes_before_the_clear_offline_error(tmp_path, monkeypatch, capsys):
    from scalingar_core.app import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = cli.main(["download", "--model", "llamagen-c2i-b-256", "--models-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.index("downloading 2 file(s), about ") < err.index("HF_HUB_OFFLINE is set")
    assert "hf download FoundationVision/LlamaGen c2i_B_256.pt" in err  # the fix is still named


def test_missing_file_error_unchanged_when_downloads_are_off(tmp_path):
    with pytest.raises(ModelFileError, match="downloads are off"):
        download.ensure_file(T2I_REPO, "vq_ds16_t2i.pt", tmp_path, download=False)


# ----------------------------------------------------------------------------- Comfy Registry metadata

def test_tool_comfy_models_list_every_downloadable_file():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    listed = {(m["location"], m["model_url"]) for m in meta["Models"]}
    expected = set()
    for name in registry.names():
        for f in registry.entry(name).files:
            if f.get("repo_id") and not f.get("patterns"):
                folder = "scalingar/" + f["repo_id"].replace("/", "--")
                expected.add((folder, f"https://huggingface.co/{f['repo_id']}/resolve/main/{f['filename']}"))
    assert expected <= listed
    # the rest: snapshots fetched by pattern (the text encoder, Janus-Pro), file by file; every such repo is
    # listed, and only with files its patterns select
    snapshots = {}
    for name in registry.names():
        for f in registry.entry(name).files:
            if f.get("patterns"):
                snapshots.setdefault(f["repo_id"], set()).update(f["patterns"])
    assert {T5_REPO, "deepseek-community/Janus-Pro-1B", "deepseek-community/Janus-Pro-7B"} <= set(snapshots)
    for repo, patterns in snapshots.items():
        urls = [url for location, url in listed - expected if location == "scalingar/" + repo.replace("/", "--")]
        assert urls, repo
        for url in urls:
            assert url.startswith(f"https://huggingface.co/{repo}/resolve/main/")
            assert selected_files([url.rsplit("/", 1)[1]], sorted(patterns)), url
    from scalingar_core.models.janus.presets import REQUIRED

    for size in ("1B", "7B"):  # at least what the Janus loader requires
        for name in REQUIRED:
            assert (f"scalingar/deepseek-community--Janus-Pro-{size}",
                    f"https://huggingface.co/deepseek-community/Janus-Pro-{size}/resolve/main/{name}") in listed
    assert {location for location, _ in listed} == {"scalingar/" + r.replace("/", "--") for r in
                                                     {f["repo_id"] for n in registry.names()
                                                      for f in registry.entry(n).files}}
    assert meta["PublisherId"] and meta["DisplayName"] == "ScalingAR"


def test_description_names_every_family():
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    for family in ("LlamaGen", "AR-GRPO", "Janus-Pro"):
        assert family in description
