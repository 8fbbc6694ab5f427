"""ScalingARTextEncode: a prompt through the loaded model's own text encoder."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from . import patcher, types
from .base import ScalingARNode


class ScalingARTextEncode(ScalingARNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARTextEncode", display_name="ScalingAR Text Encode", category=types.CATEGORY,
            description="Encodes a prompt with the model's own text encoder (FLAN-T5 for LlamaGen, the "
                        "caption encoder for toy-shapes; for Janus-Pro the prompt in its chat format).",
            inputs=[
                types.Model.Input("model", tooltip="From ScalingAR Model Loader."),
                io.String.Input("prompt", multiline=True, default="a yellow circle and a blue square",
                                tooltip="What to draw. toy-shapes understands captions like 'two red circles' "
                                        "or 'a red circle left of a blue square'."),
            ],
            outputs=[types.Conditioning.Output(display_name="conditioning")])

    @classmethod
    def execute(cls, model, prompt):
        ar = patcher.ar_model(model)
        patcher.load_for_encoding(model)
        with torch.inference_mode():
            condition = ar.encode(prompt)
        return io.NodeOutput(types.EncodedPrompt(model_name=ar.name, prompt=prompt, condition=condition))
