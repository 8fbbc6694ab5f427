"""Write the UI-format workflows in workflows/ (ComfyUI serves that folder as this pack's templates).

Config-node widget values come from the engine's dataclass defaults, so the templates never drift from
scalingar_core/engine/config.py. Run after changing a node's inputs or a default:

    .venv/bin/python scripts/comfyui/make_workflows.py        # (any Python with torch; no ComfyUI)

tests/comfy checks every template against the live node schemas (widget count and values).
"""
from __future__ import annotations

import json
import sys
import uuid
from dataclasses import fields
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scalingar_core.engine.config import GateConfig, ProfileConfig, SchedulerConfig  # noqa: E402

OUT = REPO / "workflows"

# (socket name, type) of each node kind's inputs and outputs, in schema order.
SOCKETS = {
    "ScalingARModelLoader": ([], [("model", "SCALINGAR_MODEL")]),
    "ScalingARTextEncode": ([("model", "SCALINGAR_MODEL")], [("conditioning", "SCALINGAR_CONDITIONING")]),
    "ScalingARConfidenceProfile": ([], [("profile", "SCALINGAR_PROFILE")]),
    "ScalingARTerminationGate": ([], [("gate", "SCALINGAR_GATE")]),
    "ScalingARGuidanceScheduler": ([], [("scheduler", "SCALINGAR_SCHEDULER")]),
    "ScalingARSampler": ([("model", "SCALINGAR_MODEL"), ("conditioning", "SCALINGAR_CONDITIONING"),
                          ("profile", "SCALINGAR_PROFILE"), ("gate", "SCALINGAR_GATE"),
                          ("scheduler", "SCALINGAR_SCHEDULER")],
                         [("image", "IMAGE"), ("candidates", "IMAGE"), ("trace", "SCALINGAR_TRACE"),
                          ("entropy_map", "IMAGE")]),
    "ScalingARTracePlot": ([("trace", "SCALINGAR_TRACE")], [("plot", "IMAGE")]),
    "ScalingARTraceSave": ([("trace", "SCALINGAR_TRACE")], []),
    "SaveImage": ([("images", "IMAGE")], []),
    "PreviewImage": ([("images", "IMAGE")], []),
    "Note": ([], []),
}


def defaults(cls) -> list:
    return [f.default for f in fields(cls)]


class Graph:
    def __init__(self):
        self.nodes, self.links = [], []

    def add(self, kind, pos, size, widgets=(), title=None, **extra):
        ins, outs = SOCKETS[kind]
        node = {"id": len(self.nodes) + 1, "type": kind, "pos": list(pos), "size": list(size), "flags": {},
                "order": len(self.nodes), "mode": 0,
                "inputs": [{"name": n, "type": t, "link": None} for n, t in ins],
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outs)],
                "properties": {"Node name for S&R": kind}, "widgets_values": list(widgets), **extra}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def link(self, src, output, dst, input_name):
        slot = [o["name"] for o in src["outputs"]].index(output)
        to_slot = [i["name"] for i in dst["inputs"]].index(input_name)
        link_id = len(self.links) + 1
        kind = src["outputs"][slot]["type"]
        self.links.append([link_id, src["id"], slot, dst["id"], to_slot, kind])
        src["outputs"][slot]["links"].append(link_id)
        dst["inputs"][to_slot]["link"] = link_id

    def note(self, pos, size, text):
        return self.add("Note", pos, size, [text], color="#432", bgcolor="#653")

    def to_json(self, name: str) -> dict:
        # Optional sockets left unconnected are omitted, as the editor saves them.
        for node in self.nodes:
            node["inputs"] = [i for i in node["inputs"] if i["link"] is not None
                              or i["name"] in ("model", "conditioning", "trace", "images")]
        return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"scalingar/{name}")), "revision": 0,
                "last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [20, 20]}}, "version": 0.4}


def sampler_widgets(strategy="scalingar", n=8, seed=0):
    # strategy, num_trajectories, seed (+ its control_after_generate mode), temperature, top_k, top_p, cfg,
    # compile. Sentinels: 0 / -1 / 0 / -1 = the model's own defaults (see nodes/sampler.py).
    return [strategy, n, seed, "fixed", 0.0, -1, 0.0, -1.0, False]


def scalingar_chain(g, model_node, encode, x, y, title, strategy="scalingar", with_policy=True, n=8):
    sampler = g.add("ScalingARSampler", (x + 320, y), (460, 640), sampler_widgets(strategy, n), title=title)
    g.link(model_node, "model", sampler, "model")
    g.link(encode, "conditioning", sampler, "conditioning")
    if with_policy:
        # Collapsed (one title bar each): expand to edit; unconnected they would mean "that part off".
        profile = g.add("ScalingARConfidenceProfile", (x, y + 40), (290, 120), defaults(ProfileConfig))
        gate = g.add("ScalingARTerminationGate", (x, y + 110), (290, 120), defaults(GateConfig))
        sched = g.add("ScalingARGuidanceScheduler", (x, y + 180), (290, 120), defaults(SchedulerConfig))
        for node, name in ((profile, "profile"), (gate, "gate"), (sched, "scheduler")):
            g.link(node, name, sampler, name)
        for node in (profile, gate, sched):
            node["flags"] = {"collapsed": True}
    return sampler


def outputs(g, sampler, x, y, prefix, save_trace=True):
    save = g.add("SaveImage", (x, y), (260, 300), [prefix])
    g.link(sampler, "image", save, "images")
    cands = g.add("PreviewImage", (x + 280, y), (300, 300), title="Candidates (removed = red frame)")
    g.link(sampler, "candidates", cands, "images")
    plot = g.add("ScalingARTracePlot", (x, y + 330), (260, 100), [768, 512])
    g.link(sampler, "trace", plot, "trace")
    show = g.add("PreviewImage", (x + 280, y + 330), (300, 240), title="Trace plot")
    g.link(plot, "plot", show, "images")
    entropy = g.add("PreviewImage", (x + 600, y), (320, 330), title="Entropy map (bright = unsure)")
    g.link(sampler, "entropy_map", entropy, "images")
    if save_trace:
        tsave = g.add("ScalingARTraceSave", (x, y + 470), (260, 100), [f"{prefix}_trace", "json"])
        g.link(sampler, "trace", tsave, "trace")


def single(name, model, prompt, prefix, note, dtype="auto", image_size="model default"):
    g = Graph()
    g.note((20, 20), (420, 200), note)
    loader = g.add("ScalingARModelLoader", (20, 250), (320, 130), [model, dtype, False, image_size])
    encode = g.add("ScalingARTextEncode", (20, 400), (320, 160), [prompt])
    g.link(loader, "model", encode, "model")
    sampler = scalingar_chain(g, loader, encode, 470, 20, "ScalingAR Sampler")
    outputs(g, sampler, 1300, 20, prefix)
    return g.to_json(name)


def versus(name):
    g = Graph()
    g.note((20, 20), (420, 230),
           "ScalingAR vs Best-of-N on the same prompt and seed (toy-shapes-256: offline, CPU).\n\n"
           "Top: ScalingAR (confidence profile + termination gate + guidance scheduler) removes weak "
           "trajectories early; its trace plot shows C, the threshold and the removals (orange ring: left a "
           "low-confidence basin; red cross: hard fail).\n"
           "Bottom: Best-of-N samples all 8 to the end and keeps the most confident.\n"
           "Compare the images, and the tokens_generated in each trace (ScalingAR spends fewer).\n"
           "Swap the loader's model for llamagen-t2i-xl-512 to compare on LlamaGen.")
    loader = g.add("ScalingARModelLoader", (20, 280), (320, 130), ["toy-shapes-256", "auto", False, "model default"])
    encode = g.add("ScalingARTextEncode", (20, 430), (320, 160), ["a red circle left of a blue square"])
    g.link(loader, "model", encode, "model")
    top = scalingar_chain(g, loader, encode, 470, 20, "ScalingAR")
    outputs(g, top, 1300, 20, "scalingar/vs_scalingar", save_trace=False)
    bottom = scalingar_chain(g, loader, encode, 470, 700, "Best-of-N", strategy="best_of_n", with_policy=False)
    outputs(g, bottom, 1300, 700, "scalingar/vs_best_of_n", save_trace=False)
    return g.to_json(name)


WORKFLOWS = {
    "toy_shapes_scalingar": lambda n: single(
        n, "toy-shapes-256", "a yellow circle and a blue square", "scalingar/toy",
        "ScalingAR on the bundled toy-shapes-256 model: runs offline on CPU in seconds.\n\n"
        "8 trajectories of a tiny LlamaGen-style GPT draw 'a yellow circle and a blue square' token by token "
        "(256 tokens). The sampler's "
        "widget plots each trajectory's confidence C live, with the termination threshold and the points "
        "where weak trajectories were removed; the CFG panel shows the guidance scheduler at work.\n"
        "Outputs: the selected image, all candidates (removed ones framed in red), the entropy map (where "
        "each candidate was unsure: bright = high token entropy), the trace plot and the trace JSON in "
        "output/scalingar/."),
    "llamagen_t2i_512_scalingar": lambda n: single(
        n, "llamagen-t2i-xl-512", "a photo of a red fox sitting in fresh snow, soft morning light",
        "scalingar/llamagen512",
        "ScalingAR on LlamaGen T2I XL (775M) at 512x512 (1024 tokens), the paper's main setting.\n\n"
        "Needs the weights in models/scalingar/ (GPT t2i_XL_stage2_512.pt, VQ vq_ds16_t2i.pt, FLAN-T5-XL): "
        "switch download_if_missing on to fetch them (about 15 GB), or see the README.\n"
        "Sampling keeps LlamaGen's defaults (CFG 7.5, top-k 1000): -1 / 0 on the sampler mean 'model "
        "default'. Expect fewer visual tokens than 8 full images, since the gate removes weak ones early.",
        dtype="auto"),
    "ar_grpo_256_scalingar": lambda n: single(
        n, "ar-grpo-t2i-xl-256", "a blue bicycle leaning against a yellow wall",
        "scalingar/argrpo256",
        "ScalingAR on AR-GRPO T2I XL at 256x256 (256 tokens), the paper's RL-tuned base model.\n\n"
        "Needs the weights in models/scalingar/ (AR-GRPO model.safetensors, LlamaGen VQ, FLAN-T5-XL): switch "
        "download_if_missing on to fetch them, or see the README. The base CFG is the preset's default "
        "(unverified for AR-GRPO; set cfg_scale on the sampler to override)."),
    "janus_pro_1b_scalingar": lambda n: single(
        n, "janus-pro-1b", "a red fox sitting in fresh snow, soft morning light, photograph",
        "scalingar/janus_pro_1b",
        "ScalingAR on Janus-Pro-1B at 384x384 (576 tokens), the paper's Appendix B setting with the same "
        "universal configuration.\n\n"
        "Needs the transformers-format weights (deepseek-community/Janus-Pro-1B, about 4 GB) in "
        "models/scalingar/: switch download_if_missing on to fetch them. A copy of the original "
        "deepseek-ai/Janus-Pro-1B in models/Janus-Pro/<name>/ also works: pick it in the loader instead.\n"
        "Sampling keeps the model card's defaults (CFG 5, temperature 1, no top-k): -1 / 0 on the sampler "
        "mean 'model default'. About 5 GB of VRAM at N = 8 in bf16; the vision tower is never loaded."),
    "simplear_1.5b_scalingar": lambda n: single(
        n, "simplear-1.5b-rl", "a red fox sitting in fresh snow, soft morning light, photograph",
        "scalingar/simplear_1.5b",
        "ScalingAR on SimpleAR-1.5B-RL at 1024x1024 (4096 tokens, the longest sequences of the paper's four "
        "families) with the same universal configuration.\n\n"
        "Needs Daniel0724/SimpleAR-1.5B-RL (about 3.5 GB) and decoder.jit of "
        "nvidia/Cosmos-1.0-Tokenizer-DV8x16x16 in models/scalingar/: switch download_if_missing on to fetch "
        "them. A folder in models/SimpleAR/<name>/ (decoder.jit beside it in "
        "models/SimpleAR/Cosmos-1.0-Tokenizer-DV8x16x16/) also works. The decoder's TorchScript file is read as "
        "data, never run.\n"
        "image_size on the loader: 256 / 512 / 768 / 1024 px. Sampling keeps SimpleAR's evaluation settings "
        "(CFG 6, temperature 1, all 64,000 codes): -1 / 0 on the sampler mean 'model default'. About 7.5 GB "
        "of VRAM at N = 8, 1024 px, bf16. Unverified against the real weights (none could be fetched where "
        "this was built).", image_size="1024"),
    "scalingar_vs_best_of_n": versus,
}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, make in WORKFLOWS.items():
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(make(name), indent=1) + "\n")
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
