"""ScalingARTracePlot (trace -> IMAGE) and ScalingARTraceSave (JSON / CSV into ComfyUI's output folder)."""
from __future__ import annotations

import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io

from scalingar_core import files
from scalingar_core.app.plot import plot_summary
from scalingar_core.errors import echo

from . import types
from .base import ScalingARNode
from .progress import json_safe


class ScalingARTracePlot(ScalingARNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARTracePlot", display_name="ScalingAR Trace Plot", category=types.CATEGORY,
            description="Draws the trace: confidence C per trajectory with the threshold theta and removals "
                        "(top), each trajectory's CFG scale (bottom). The selected trajectory is thicker.",
            inputs=[
                types.Trace.Input("trace", tooltip="From ScalingAR Sampler."),
                io.Int.Input("width", default=768, min=128, max=4096, step=8, tooltip="Image width in pixels."),
                io.Int.Input("height", default=512, min=128, max=4096, step=8, tooltip="Image height in pixels."),
            ],
            outputs=[io.Image.Output(display_name="plot")])

    @classmethod
    def execute(cls, trace, width, height):
        image = plot_summary(json_safe(trace.summary()), width, height)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return io.NodeOutput(torch.from_numpy(array)[None])


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be saved under ComfyUI's output folder (checked at queue time), or None."""
    if not str(prefix).strip():
        return "filename_prefix is empty: give a name such as scalingar/trace"
    output_dir = os.path.abspath(folder_paths.get_output_directory())
    folder = os.path.abspath(os.path.join(output_dir, os.path.dirname(os.path.normpath(prefix))))
    if os.path.commonpath((output_dir, folder)) != output_dir:
        return (f"filename_prefix={echo(prefix)} points outside ComfyUI's output folder {output_dir}: use a "
                f"relative name such as scalingar/trace")
    try:
        files.check_output_dir(folder, "the trace folder", create=False)
    except ValueError as exc:
        return f"filename_prefix={echo(prefix)}: {exc}"
    return None


class ScalingARTraceSave(ScalingARNode):
    CHECKED_INPUTS = ("filename_prefix",)

    @classmethod
    def check_input(cls, name, value):
        return prefix_problem(value)

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARTraceSave", display_name="ScalingAR Trace Save", category=types.CATEGORY,
            description="Writes the full trace (every signal and state value per trajectory and step) to "
                        "ComfyUI's output folder as JSON and/or CSV.",
            inputs=[
                types.Trace.Input("trace", tooltip="From ScalingAR Sampler."),
                io.String.Input("filename_prefix", default="scalingar/trace",
                                tooltip="Path under the output folder; a counter and the extension are added."),
                io.Combo.Input("format", options=["json", "csv", "json+csv"], default="json",
                               tooltip="json: the whole trace. csv: one row per trajectory and step."),
            ],
            outputs=[],
            is_output_node=True)

    @classmethod
    def execute(cls, trace, filename_prefix, format):
        problem = prefix_problem(filename_prefix)  # also when run without queue-time validation
        if problem:
            raise ValueError(problem)
        output_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir)
        base = os.path.join(folder, f"{name}_{counter:05}_")
        written = []
        if "json" in format:
            written.append(trace.save_json(base + ".json"))
        if "csv" in format:
            written.append(trace.save_csv(base + ".csv"))
        files = [{"filename": p.name, "subfolder": subfolder, "type": "output"} for p in written]
        return io.NodeOutput(ui={"scalingar_files": files})
