"""ScalingARModelLoader: a registry preset or a local checkpoint, handed to ComfyUI's model management."""
from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.utils
import torch
from comfy_api.latest import io

from scalingar_core.models import registry
from scalingar_core.models.download import describe_plan, download_plan

from . import models, patcher, progress, types
from .base import ScalingARNode

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def preset_repos() -> set[str]:
    return {f["repo_id"] for name in registry.names() for f in registry.entry(name).files if f.get("repo_id")}


def model_choices() -> list[str]:
    # Presets first (the default toy-shapes-256 leads: it runs anywhere), then whatever sits in models/scalingar/, then
    # Janus-Pro folders in models/Janus-Pro/ and SimpleAR folders in models/SimpleAR/.
    return registry.names() + models.local_checkpoints(preset_repos()) + list(models.family_folders())


IMAGE_SIZES = ["model default", "256", "512", "768", "1024"]


def image_size_value(choice: str) -> int | None:
    return None if choice == IMAGE_SIZES[0] else int(choice)


def resolve_dtype(choice: str, device: torch.device) -> torch.dtype:
    """``auto``: fp32 on CPU; on an accelerator bf16 where supported, else fp16, else fp32."""
    if DTYPES[choice] is not None:
        return DTYPES[choice]
    if device.type == "cpu":
        return torch.float32
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32


class DownloadProgress:
    """The registry's ``progress(label, done_bytes, total_bytes_or_None)`` -> ComfyUI's progress bar
    (one bar per file; an unknown total shows as done/done)."""

    def __init__(self, node_id):
        self.node_id = node_id
        self.bar = None
        self.label = None

    def __call__(self, label, done, total=None):
        total = max(int(total or done or 1), 1)
        if self.bar is None or label != self.label:
            self.bar, self.label = comfy.utils.ProgressBar(total, node_id=self.node_id), label
        self.bar.update_absolute(int(done), total)


def announce_download(files: list[dict], folder: str, node_id=None, server=None, api=None) -> None:
    """Before fetching: what will be downloaded and how big it is, in ComfyUI's log and on the loader node."""
    plan = download_plan(files, folder, api)
    if not plan:
        return
    text = describe_plan(plan, folder)
    logging.info("[ScalingAR] %s", text)
    server = server if server is not None else progress.prompt_server()
    if server is not None and node_id is not None and hasattr(server, "send_progress_text"):
        server.send_progress_text(text, node_id)


def load_ar_model(name: str, dtype: torch.dtype, download: bool, node_id=None, image_size: int | None = None):
    """The ARModel for dropdown value ``name`` on ComfyUI's offload device (the sampler moves it);
    ``image_size`` px for models that decode several sizes (SimpleAR), None = the model's own."""
    device = mm.unet_offload_device()
    if name in registry.names():
        entry = registry.entry(name)
        folder = models.folder_for(entry.files)
        if download:
            announce_download(entry.files, folder, node_id)
        return registry.load(name, models_dir=folder, device=device, dtype=dtype, download=download,
                             progress=DownloadProgress(node_id), image_size=image_size)
    # A file or folder listed from the model folders (the dropdown checked it): the registry detects its family.
    listed = models.family_folders()
    if name.startswith(f"{models.SIMPLEAR_FOLDER}/") and name in listed:
        from scalingar_core.models.simplear.presets import DEFAULT_IMAGE_SIZE, load_checkpoint

        return load_checkpoint(listed[name], device=device, dtype=dtype, name=name,
                               image_size=image_size or DEFAULT_IMAGE_SIZE)
    if image_size is not None:
        raise ValueError(f"{name} decodes at its own fixed size: the image size is a setting of SimpleAR models; "
                         f"set it to '{IMAGE_SIZES[0]}'")
    path = listed[name] if name in listed else models.full_path(name)
    return registry.load_checkpoint(path, device=device, dtype=dtype)


class ScalingARModelLoader(ScalingARNode):
    # a name outside the dropdown is still looked up (never used as a path): the loader says whether the file
    # is missing or no checkpoint of a known family, which "not one of the choices" would hide
    SELF_CHECKED_INPUTS = ("model",)

    @classmethod
    def define_schema(cls):
        choices = model_choices()
        return io.Schema(
            node_id="ScalingARModelLoader", display_name="ScalingAR Model Loader", category=types.CATEGORY,
            description="Loads a next-token-prediction image model (tokenizer, transformer, decoder) for "
                        "ScalingAR sampling. The toy-shapes models run offline on CPU.",
            inputs=[
                io.Combo.Input("model", options=choices, default=choices[0] if choices else None,
                               tooltip=f"A preset from the ScalingAR registry, a checkpoint found in "
                                       f"models/{models.FOLDER}/, or a Janus-Pro folder in "
                                       f"models/{models.JANUS_FOLDER}/ or models/{models.SIMPLEAR_FOLDER}/ (and "
                                       f"extra_model_paths.yaml folders)."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="Weight precision. auto: float32 on CPU, bfloat16 (else float16) on "
                                       "GPUs that support it."),
                io.Boolean.Input("download_if_missing", default=False,
                                 tooltip=f"Fetch missing weight files into models/{models.FOLDER}/ (progress "
                                         f"shown on this node). Off: a missing file is an error that says "
                                         f"where to put it."),
                io.Combo.Input("image_size", options=IMAGE_SIZES, default=IMAGE_SIZES[0], optional=True,
                               tooltip="Image size in px for SimpleAR (16 px per token: 256 px = 256 tokens, "
                                       "1024 px = 4096; model default 1024). Other models have a fixed size."),
            ],
            outputs=[types.Model.Output(display_name="model")],
            hidden=[io.Hidden.unique_id])

    @classmethod
    def execute(cls, model, dtype, download_if_missing, image_size=IMAGE_SIZES[0]):
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        torch_dtype = resolve_dtype(dtype, mm.get_torch_device())
        ar = load_ar_model(model, torch_dtype, download_if_missing, node_id, image_size_value(image_size))
        return io.NodeOutput(patcher.wrap(ar))
