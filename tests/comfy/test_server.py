"""Server tier: a real ComfyUI 0.3.75 process with this pack installed, driven over HTTP and websocket.

    bash scripts/comfyui/setup.sh
    .scratch/comfyui/venv/bin/python -m pytest tests/comfy/test_server.py -q        # marker: comfyui

Skipped (with the reason) when the ComfyUI build is missing; the runs need the bundled toy-shapes weights.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import fields
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "comfyui"))

import harness  # noqa: E402
import workflow_api  # noqa: E402

pytestmark = pytest.mark.comfyui

OFFLINE_WORKFLOWS = ["toy_shapes_scalingar", "scalingar_vs_best_of_n"]  # the others need LlamaGen weights


def toy_steps() -> int:
    """Tokens per image of the default toy model, which both offline workflows load."""
    from scalingar_core.models import registry

    h, w = registry.entry(registry.DEFAULT_MODEL).info.grid
    return h * w
ALL_WORKFLOWS = OFFLINE_WORKFLOWS + ["llamagen_t2i_512_scalingar", "ar_grpo_256_scalingar", "janus_pro_1b_scalingar",
                                     "simplear_1.5b_scalingar"]
NODE_IDS = {"ScalingARModelLoader", "ScalingARTextEncode", "ScalingARConfidenceProfile", "ScalingARTerminationGate",
            "ScalingARGuidanceScheduler", "ScalingARSampler", "ScalingARTracePlot", "ScalingARTraceSave"}


EXTRA_CHECKPOINT = "c2i_B_256.safetensors"  # a LlamaGen c2i GPT file by name (its contents are junk)
FOREIGN_FILE = "extra_local.safetensors"  # no family knows it: not listed


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not harness.is_set_up():
        pytest.skip(f"no ComfyUI in {harness.comfyui_home()}: run `bash scripts/comfyui/setup.sh`")
    pytest.importorskip("websocket", reason="websocket-client is installed by scripts/comfyui/setup.sh")
    # An extra_model_paths.yaml with a "scalingar:" folder holding one local file: the loader must list it.
    extra = tmp_path_factory.mktemp("extra-models")
    (extra / "scalingar").mkdir()
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(4)}, str(extra / "scalingar" / EXTRA_CHECKPOINT))
    save_file({"weight": torch.zeros(4)}, str(extra / "scalingar" / FOREIGN_FILE))
    (extra / "extra_model_paths.yaml").write_text(f"test_paths:\n    base_path: {extra}\n    scalingar: scalingar\n")
    srv = harness.ComfyServer(extra_args=["--extra-model-paths-config", str(extra / "extra_model_paths.yaml")])
    srv.start()
    print(f"\nComfyUI started in {srv.startup_seconds:.1f} s at {srv.url} (log {srv.log_path})")
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def needs_toy_weights():
    from scalingar_core.models.toy import model as toy_model

    if not toy_model.WEIGHTS_FILE.is_file():
        pytest.skip(f"toy-shapes weights missing ({toy_model.WEIGHTS_FILE}); train them: {toy_model.TRAIN_COMMAND}")


def api_prompt(name: str, object_info: dict) -> dict:
    workflow = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    return workflow_api.to_api(workflow, object_info)


def nodes_of(api: dict, class_type: str) -> list[str]:
    return [k for k, v in api.items() if v["class_type"] == class_type]


class Run:
    """One queued prompt observed over the websocket until it finishes, fails or is interrupted."""

    def __init__(self, server, api: dict, on_message=None, timeout: float = 300):
        import websocket

        self.client_id = str(uuid.uuid4())
        self.messages: list[dict] = []
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={self.client_id}",
                                         timeout=timeout)
        try:
            status, body = server.queue(api, self.client_id)
            assert status == 200, f"POST /prompt -> {status}: {body}"
            self.prompt_id = body["prompt_id"]
            self.node_errors = body.get("node_errors") or {}  # outputs dropped at queue time, the rest runs
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                raw = ws.recv()
                if isinstance(raw, bytes):
                    continue  # binary preview frames
                msg = json.loads(raw)
                self.messages.append(msg)
                data = msg.get("data", {})
                if on_message is not None:
                    on_message(msg)
                if data.get("prompt_id") not in (None, self.prompt_id):
                    continue
                if msg["type"] in ("execution_error", "execution_interrupted"):
                    break
                if msg["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == self.prompt_id:
                    break
            else:
                raise TimeoutError(f"prompt {self.prompt_id} still running after {timeout}s")
        finally:
            ws.close()
        self.history = server.wait_history(self.prompt_id, timeout=30)

    def of_type(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m["type"] == kind]

    @property
    def error(self):
        errors = self.of_type("execution_error")
        return errors[0] if errors else None


# ----------------------------------------------------------------------------- the pack is there

def test_pack_imported_without_errors(server):
    log = server.log()
    lines = [ln for ln in log.splitlines() if "custom_nodes/ScalingAR" in ln or "custom_nodes\\ScalingAR" in ln]
    assert lines, f"ComfyUI never tried to import the pack; log tail:\n{log[-2000:]}"
    assert not any("IMPORT FAILED" in ln or "Cannot import" in ln for ln in lines), "\n".join(lines)
    assert "Traceback" not in "\n".join(ln for ln in log.splitlines() if "ScalingAR" in ln)


def test_every_node_in_object_info_with_expected_inputs(object_info):
    from scalingar_core.engine.config import GateConfig, ProfileConfig, SchedulerConfig

    ours = {k: v for k, v in object_info.items() if k.startswith("ScalingAR")}
    assert set(ours) == NODE_IDS
    for node_id, info in ours.items():
        assert info["category"] == "ScalingAR" and info["display_name"].startswith("ScalingAR ")
    req = lambda n: list(ours[n]["input"]["required"])  # noqa: E731
    opt = lambda n: list(ours[n]["input"].get("optional", {}))  # noqa: E731
    assert req("ScalingARModelLoader") == ["model", "dtype", "download_if_missing"]
    assert ours["ScalingARModelLoader"]["input"]["required"]["model"][1]["options"][0] == "toy-shapes-256"
    assert req("ScalingARTextEncode") == ["model", "prompt"]
    assert ours["ScalingARTextEncode"]["input"]["required"]["prompt"][1]["multiline"] is True
    assert req("ScalingARSampler") == ["model", "conditioning", "strategy", "num_trajectories", "seed",
                                       "temperature", "top_k", "top_p", "cfg_scale"]
    assert opt("ScalingARSampler") == ["profile", "gate", "scheduler", "compile"]
    assert ours["ScalingARSampler"]["input"]["required"]["strategy"][1]["options"] == \
        ["scalingar", "plain", "best_of_n", "importance_sampling", "random_prune"]
    # new outputs go at the end: saved workflows link outputs by position
    assert ours["ScalingARSampler"]["output"] == ["IMAGE", "IMAGE", "SCALINGAR_TRACE", "IMAGE"]
    assert ours["ScalingARSampler"]["output_name"] == ["image", "candidates", "trace", "entropy_map"]
    for node, cls in (("ScalingARConfidenceProfile", ProfileConfig), ("ScalingARTerminationGate", GateConfig),
                      ("ScalingARGuidanceScheduler", SchedulerConfig)):
        assert req(node) == [f.name for f in fields(cls)]
        for f in fields(cls):
            assert ours[node]["input"]["required"][f.name][1]["default"] == f.default, f"{node}.{f.name}"
    assert ours["ScalingARTraceSave"]["output_node"] is True
    assert ours["ScalingARSampler"]["output_node"] is True  # so cache hits re-send its trace to the widget
    assert req("ScalingARTracePlot") == ["trace", "width", "height"]


def test_extra_model_paths_folder_is_listed_and_a_broken_checkpoint_fails_clearly(server, object_info):
    options = object_info["ScalingARModelLoader"]["input"]["required"]["model"][1]["options"]
    assert EXTRA_CHECKPOINT in options and FOREIGN_FILE not in options
    api = {
        "1": {"class_type": "ScalingARModelLoader", "inputs": {"model": EXTRA_CHECKPOINT, "dtype": "auto",
                                                              "download_if_missing": False}},
        "2": {"class_type": "ScalingARTextEncode", "inputs": {"model": ["1", 0], "prompt": "a red circle"}},
        "3": {"class_type": "ScalingARSampler", "inputs": {
            "model": ["1", 0], "conditioning": ["2", 0], "strategy": "plain", "num_trajectories": 1, "seed": 0,
            "temperature": 0.0, "top_k": -1, "top_p": 0.0, "cfg_scale": -1.0}},
    }
    run = Run(server, api)
    assert run.error is not None and run.error["node_id"] == "1"
    message = run.error["exception_message"]
    assert "llamagen-c2i-b-256" in message and "vq_ds16_c2i.pt" in message, message  # its VQ is missing


def test_janus_workflow_is_accepted_and_stops_at_the_loader_naming_the_missing_files(server, object_info):
    """The Janus-Pro template converts against the live schemas, POST /prompt accepts it (every value
    valid), and without weights (downloads off) the loader fails naming repository, file and folder."""
    run = Run(server, api_prompt("janus_pro_1b_scalingar", object_info))
    assert run.error is not None
    assert run.error["node_type"] == "ScalingARModelLoader", run.error
    message = run.error["exception_message"]
    assert "deepseek-community/Janus-Pro-1B" in message and "model.safetensors" in message, message
    assert "deepseek-community--Janus-Pro-1B" in message, message


def test_simplear_workflow_is_accepted_and_stops_at_the_loader_naming_the_missing_files(server, object_info):
    """The SimpleAR template (image_size 1024 on the loader) converts against the live schemas, POST /prompt
    accepts it, and without weights the loader fails naming the repository and its folder."""
    run = Run(server, api_prompt("simplear_1.5b_scalingar", object_info))
    assert run.error is not None
    assert run.error["node_type"] == "ScalingARModelLoader", run.error
    message = run.error["exception_message"]
    assert "Daniel0724/SimpleAR-1.5B-RL" in message and "Daniel0724--SimpleAR-1.5B-RL" in message, message


def test_templates_and_web_extension_are_served(server):
    templates = server.get("/workflow_templates")
    assert sorted(templates.get("ScalingAR", [])) == sorted(ALL_WORKFLOWS)
    for name in ALL_WORKFLOWS:
        workflow = server.get(f"/api/workflow_templates/ScalingAR/{name}.json")
        assert any(n["type"] == "ScalingARSampler" for n in workflow["nodes"])
    extensions = server.get("/extensions")
    assert any(e.startswith("/extensions/ScalingAR/") and e.endswith(".js") for e in extensions), extensions


# ----------------------------------------------------------------------------- running workflows

@pytest.mark.parametrize("name", OFFLINE_WORKFLOWS)
def test_offline_workflow_runs_with_live_events_image_and_trace(server, object_info, name):
    needs_toy_weights()
    api = api_prompt(name, object_info)
    samplers = nodes_of(api, "ScalingARSampler")
    started = time.monotonic()
    run = Run(server, api)
    elapsed = time.monotonic() - started
    assert run.error is None, run.error
    print(f"\n{name}: {elapsed:.1f} s, {len(run.messages)} websocket messages")
    steps = run.of_type("scalingar.step")
    for sampler in samplers:
        mine = [e for e in steps if e["node"] == sampler]
        assert mine, f"no scalingar.step events for sampler {sampler}"
        assert mine[-1]["step"] == mine[-1]["total"] - 1  # the final token is always reported
        assert all(e["prompt_id"] == run.prompt_id for e in mine)
        assert {"C", "cfg", "theta", "ids", "removed"} <= set(mine[-1])
        executed = [e for e in run.of_type("executed") if e["node"] == sampler]
        assert executed and executed[0]["output"]["scalingar_trace"][0]["steps"] == mine[-1]["total"]
    outputs = run.history["outputs"]
    for save in nodes_of(api, "SaveImage"):
        images = outputs[save]["images"]
        assert len(images) == 1 and images[0]["type"] == "output"
        assert (server.workdir / "output" / images[0]["subfolder"] / images[0]["filename"]).is_file()
    for preview in nodes_of(api, "PreviewImage"):
        assert outputs[preview]["images"], f"preview {preview} got no image"
    for sampler in samplers:
        summary = outputs[sampler]["scalingar_trace"][0]
        n = api[sampler]["inputs"]["num_trajectories"]
        assert summary["num_trajectories"] == n and len(summary["trajectories"]) == n
    for tsave in nodes_of(api, "ScalingARTraceSave"):
        saved = outputs[tsave]["scalingar_files"][0]
        trace = json.loads((server.workdir / "output" / saved["subfolder"] / saved["filename"]).read_text())
        assert trace["steps"] == toy_steps() and trace["strategy"] == "scalingar"
    for sampler in samplers:  # throttled: at most 20 progress updates a second, the last token always
        progress = [p for p in run.of_type("progress") if p.get("node") == sampler]
        assert progress and progress[-1]["value"] == progress[-1]["max"] == toy_steps()
        assert len(progress) <= 20 * elapsed + 2, (len(progress), elapsed)


def test_same_seed_twice_is_cached_and_still_redraws(server, object_info):
    """Queueing the identical prompt again hits ComfyUI's cache: the sampler's UI output is re-sent."""
    needs_toy_weights()
    api = api_prompt("toy_shapes_scalingar", object_info)
    sampler = nodes_of(api, "ScalingARSampler")[0]
    first = Run(server, api)
    second = Run(server, api)
    assert first.error is None and second.error is None
    assert not [e for e in second.of_type("scalingar.step") if e["node"] == sampler]  # nothing recomputed
    cached = [e for e in second.of_type("executed") if e["node"] == sampler]
    assert cached and cached[0]["output"]["scalingar_trace"] == \
        first.history["outputs"][sampler]["scalingar_trace"]


# ----------------------------------------------------------------------------- bad input, cancel

def test_invalid_inputs_come_back_as_node_errors(server, object_info):
    api = api_prompt("toy_shapes_scalingar", object_info)
    sampler = nodes_of(api, "ScalingARSampler")[0]
    loader = nodes_of(api, "ScalingARModelLoader")[0]
    # Dropdowns: ComfyUI 0.3.75 checks only classic list inputs ("value_not_in_list"); for our V3 combos
    # the pack's validate_inputs answers ("custom_validation_failed", naming the value).
    combo = ("value_not_in_list", "custom_validation_failed")
    cases = [
        (sampler, "num_trajectories", 0, ("value_smaller_than_min",)),
        (sampler, "top_p", 1.5, ("value_bigger_than_max",)),
        (sampler, "strategy", "greedy", combo),
        (loader, "model", "../../etc/passwd", combo),
        (sampler, "model", None, ("required_input_missing",)),
    ]
    for node, key, value, expected in cases:
        bad = json.loads(json.dumps(api))
        if value is None:
            del bad[node]["inputs"][key]
        else:
            bad[node]["inputs"][key] = value
        status, body = server.queue(bad)
        assert status == 400, (key, body)
        errors = body["node_errors"][node]["errors"]
        assert any(e["type"] in expected for e in errors), (key, errors)
        if isinstance(value, str):
            assert any(value in e.get("details", "") for e in errors), errors
        assert body["node_errors"][node]["class_type"] in ("ScalingARSampler", "ScalingARModelLoader")


def test_a_trace_save_that_cannot_write_is_refused_at_queue_time_and_the_rest_runs(server, object_info):
    """ComfyUI drops an output node that fails validation and runs the others: the image is still saved,
    and the Trace Save's problem is reported when queueing instead of failing after the generation."""
    needs_toy_weights()
    api = api_prompt("toy_shapes_scalingar", object_info)
    tsave = nodes_of(api, "ScalingARTraceSave")[0]
    api[tsave]["inputs"]["filename_prefix"] = "../../escape"
    run = Run(server, api)
    errors = run.node_errors[tsave]["errors"]
    assert errors[0]["type"] == "custom_validation_failed" and "outside ComfyUI's output folder" in \
        errors[0]["details"]
    assert run.error is None and tsave not in run.history["outputs"]
    for save in nodes_of(api, "SaveImage"):
        assert run.history["outputs"][save]["images"]


def test_cancel_at_thirty_percent_then_run_again(server, object_info):
    needs_toy_weights()
    api = api_prompt("toy_shapes_scalingar", object_info)
    sampler = nodes_of(api, "ScalingARSampler")[0]
    # 64 trajectories to the end (no pruning): long enough to catch at 30 % (~0.5 s on CPU here)
    api[sampler]["inputs"].update(num_trajectories=64, seed=12345, strategy="best_of_n")
    for node in nodes_of(api, "ScalingARTraceSave"):
        del api[node]
    sent = []

    def interrupt_at_30(msg):
        data = msg.get("data", {})
        if not sent and msg["type"] == "progress" and data.get("node") == sampler and \
                data["value"] >= 0.3 * data["max"]:
            sent.append(data["value"])
            server.interrupt()

    run = Run(server, api, on_message=interrupt_at_30)
    assert sent, "never saw the sampler reach 30 %"
    assert run.of_type("execution_interrupted"), [m["type"] for m in run.messages][-10:]
    last = [p["value"] for p in run.of_type("progress") if p.get("node") == sampler][-1]
    assert last < toy_steps(), "the run finished although it was interrupted"
    print(f"\ninterrupt sent at token {sent[0]}/{toy_steps()}, stopped at {last}/{toy_steps()}")
    # The server stays healthy: the same graph with another seed completes.
    api[sampler]["inputs"].update(num_trajectories=4, seed=7)
    again = Run(server, api)
    assert again.error is None and not again.of_type("execution_interrupted")
    assert again.history["status"]["status_str"] == "success"
    assert again.history["outputs"][sampler]["scalingar_trace"][0]["num_trajectories"] == 4
    stats = server.get("/system_stats")
    assert stats["system"]["comfyui_version"] == "0.3.75"
