"""Convert a ComfyUI UI-format workflow (what the editor saves and templates ship) into the API format
that ``POST /prompt`` takes, using the server's ``/object_info`` to name each widget value.

    python scripts/comfyui/workflow_api.py workflows/toy_shapes_scalingar.json --object-info info.json

Rules (those of the ComfyUI editor for the node kinds our workflows use): Note / MarkdownNote / Reroute
nodes and muted (mode 2) nodes are dropped; a linked input becomes ``[source_id, output_slot]``; widget
values are consumed in the order of the node's inputs (required, then optional), and a widget with
``control_after_generate`` owns one extra value (its "fixed"/"randomize" mode), which is skipped.
"""
from __future__ import annotations

import argparse
import json
import sys

UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec) -> bool:
    kind = spec[0]
    if isinstance(kind, list):  # old-style combo: the options list itself
        return True
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return kind in WIDGET_TYPES and not options.get("forceInput")


def widget_names(node_info: dict) -> list[tuple[str, bool]]:
    """(input name, has control_after_generate) for each widget, in the order the editor lays them out."""
    out = []
    order = node_info.get("input_order") or {k: list(v) for k, v in node_info["input"].items()}
    for section in ("required", "optional"):
        specs = node_info["input"].get(section, {})
        for name in order.get(section, []):
            spec = specs[name]
            if _is_widget(spec):
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                out.append((name, bool(options.get("control_after_generate"))))
    return out


def to_api(workflow: dict, object_info: dict) -> dict:
    links = {link[0]: link for link in workflow.get("links", [])}
    api = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in UI_ONLY or node.get("mode", 0) in (2, 4):
            continue
        if kind not in object_info:
            raise ValueError(f"node {node['id']} has type {kind!r}, which this server does not know "
                             f"(is the pack that provides it installed?)")
        inputs = {}
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = node.get("widgets_values", [])
        if isinstance(values, dict):  # some editors save widgets by name
            values = [values.get(name) for name, _ in widget_names(object_info[kind])]
        position = 0
        for name, has_control in widget_names(object_info[kind]):
            if position >= len(values):
                raise ValueError(f"node {node['id']} ({kind}) has {len(values)} widget values, but its "
                                 f"inputs need more (missing {name!r}); re-save the workflow")
            inputs[name] = values[position]
            position += 2 if has_control else 1
        if position < len(values):
            raise ValueError(f"node {node['id']} ({kind}) has {len(values)} widget values but its inputs take "
                             f"{position}: the workflow was saved for a different version of the node")
        for name, link_id in linked.items():
            _, source, slot, _, _, _ = links[link_id]
            inputs[name] = [str(source), slot]
        api[str(node["id"])] = {"class_type": kind, "inputs": inputs,
                                "_meta": {"title": node.get("title") or kind}}
    return api


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow")
    parser.add_argument("--object-info", required=True, help="JSON saved from GET /object_info")
    args = parser.parse_args(argv)
    with open(args.workflow) as f:
        workflow = json.load(f)
    with open(args.object_info) as f:
        info = json.load(f)
    json.dump(to_api(workflow, info), sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
