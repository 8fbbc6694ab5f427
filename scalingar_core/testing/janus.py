"""Tiny random Janus-Pro folders in both published layouts, for tests and offline demos.

``write_transformers_folder`` saves a random ``JanusForConditionalGeneration`` with ``save_pretrained``
(config, safetensors weights, processor with tokenizer and chat template, generation config), i.e. the
``deepseek-community`` layout. ``write_original_folder`` writes the same tensors under the module names of
DeepSeek's own ``janus`` code (``MultiModalityCausalLM``: ``language_model`` = ``LlamaForCausalLM``,
``gen_vision_model`` = LlamaGen's VQ-16, ``gen_aligner``/``aligner`` = ``MlpProjector`` with ``layers``
Linear-GELU-Linear, ``gen_head`` = ``output_mlp_projector`` + ``vision_head``, ``vision_model`` = SigLIP)
in ``pytorch_model.bin`` with the original ``config.json``; the names are written out here independently
of the loader's mapping (``weights.from_original``) so a test of one checks the other.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL = {"bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>", "pad": "<｜▁pad▁｜>",
           "boi": "<begin_of_image>", "eoi": "<end_of_image>", "image": "<image_placeholder>"}
WORDS = ["<|User|>", "<|Assistant|>", ":", "a", "red", "blue", "green", "cube", "sphere", "on", "the", "left",
         "of", "two", "small", "big", "cat", "dog", "photo", "[UNK]"]
# Our own chat template with the released format for a user turn: "<|User|>: {text}\n\n<|Assistant|>:".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|User|>: {% else %}{{ message['role'] | capitalize }}: {% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}"
    "{% endfor %}{{ '\\n\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}")


def tiny_config(vq: str = "tiny", side: int = 4):
    """A few-layer Janus config: 64-token text vocab, 40 image codes, a ``side`` x ``side`` token grid.
    ``vq="tiny"``: a 2-level VQ decoder (2 px per token); ``"vq16"``: the released VQ-16 architecture."""
    from transformers import JanusConfig

    vocab = {name: i for i, name in enumerate(list(SPECIAL.values()) + WORDS)}
    text = dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
                pad_token_id=vocab[SPECIAL["pad"]], bos_token_id=vocab[SPECIAL["bos"]],
                eos_token_id=vocab[SPECIAL["eos"]])
    vision = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16 * side, patch_size=16,
                  projection_dim=32, num_image_tokens=side * side)
    vq_cfg = dict(embed_dim=8, num_embeddings=40, projection_dim=32, image_token_embed_dim=32)
    if vq == "tiny":
        vq_cfg.update(latent_channels=32, base_channels=32, channel_multiplier=[1, 2], num_res_blocks=1)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq_cfg,
                       image_token_id=vocab[SPECIAL["image"]])


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    names = list(SPECIAL.values()) + WORDS
    tok = Tokenizer(models.WordLevel({n: i for i, n in enumerate(names)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL.values()) + ["<|User|>", "<|Assistant|>"])
    tok.post_processor = processors.TemplateProcessing(single=f"{SPECIAL['bos']} $A",
                                                       special_tokens=[(SPECIAL["bos"], 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL["bos"], eos_token=SPECIAL["eos"], pad_token=SPECIAL["pad"],
        unk_token="[UNK]", padding_side="left",
        extra_special_tokens={"image_token": SPECIAL["image"], "boi_token": SPECIAL["boi"],
                              "eoi_token": SPECIAL["eoi"]})


def random_model(config, seed: int = 0):
    """A random ``JanusForConditionalGeneration`` in fp32. Built on the meta device and filled from one
    seeded generator (transformers' own init of the 70M-parameter VQ-16 takes seconds); the scale makes the
    image logits far from uniform, so greedy choices are clear."""
    from transformers import JanusForConditionalGeneration

    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    model.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else p.shape[-1] ** -0.5))
        for module in model.modules():  # the non-persistent buffers to_empty left uninitialised
            if hasattr(module, "inv_freq"):
                module.__init__(module.config)
            if hasattr(module, "position_ids"):
                module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]))
        head = model.model.generation_head.vision_head
        head.weight.mul_(4.0)
    model.tie_weights()
    return model


def generation_config(tokenizer):
    from transformers import GenerationConfig

    vocab = tokenizer.get_vocab()
    return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=vocab[SPECIAL["pad"]], guidance_scale=5, temperature=1.0,
                            generation_kwargs={"boi_token_id": vocab[SPECIAL["boi"]]})


def write_transformers_folder(folder: Path, model) -> Path:
    """``model.save_pretrained`` + processor + generation config: the ``deepseek-community`` layout."""
    from transformers import JanusImageProcessor, JanusProcessor

    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(folder)
    side = model.config.vision_config.image_size
    processor = JanusProcessor(JanusImageProcessor(size={"height": side, "width": side}), tokenizer,
                               chat_template=CHAT_TEMPLATE, num_image_tokens=model.config.vision_config.num_image_tokens)
    processor.save_pretrained(folder)
    return folder


def _original_vq_key(key: str) -> str:
    """transformers VQ names -> LlamaGen VQ-16 names (``docs/models.md``)."""
    key = key.replace(".up.", ".conv_blocks.").replace(".down.", ".conv_blocks.").replace(".block.", ".res.")
    return key.replace("mid.block_1.", "mid.0.").replace("mid.attn_1.", "mid.1.").replace("mid.block_2.", "mid.2.")


def original_key(key: str) -> str:
    """A transformers ``JanusForConditionalGeneration`` key under the original ``MultiModalityCausalLM`` name."""
    table = [("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
             ("model.generation_embeddings.", "gen_embed."),
             ("model.generation_aligner.fc1.", "gen_aligner.layers.0."),
             ("model.generation_aligner.hidden_layers.0.", "gen_aligner.layers.2."),
             ("model.generation_head.proj_out.", "gen_head.output_mlp_projector."),
             ("model.generation_head.vision_head.", "gen_head.vision_head."),
             ("model.aligner.fc1.", "aligner.layers.0."), ("model.aligner.hidden_layers.0.", "aligner.layers.2."),
             ("model.vision_model.", "vision_model.vision_tower."), ("model.vqmodel.", "gen_vision_model.")]
    for new, old in table:
        if key.startswith(new):
            key = old + key[len(new):]
            break
    return _original_vq_key(key) if key.startswith("gen_vision_model.") else key


def original_config(config) -> dict:
    """The original ``config.json`` of a model with transformers config ``config``."""
    t, vq = config.text_config, config.vq_config
    language = {k: getattr(t, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                           "rms_norm_eps")}
    language.update(model_type="llama", torch_dtype="bfloat16")
    return {
        "model_type": "multi_modality",
        "language_config": language,
        "vision_config": {"cls": "CLIPVisionTower", "params": {"image_size": config.vision_config.image_size,
                                                               "model_name": "siglip_large_patch16_384"}},
        "aligner_config": {"cls": "MlpProjector", "params": {"depth": 2, "n_embed": t.hidden_size,
                                                             "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "params": {"image_token_size": vq.num_embeddings,
                                                         "n_embed": vq.embed_dim}},
        "gen_aligner_config": {"cls": "MlpProjector", "params": {"depth": 2, "input_dim": vq.embed_dim,
                                                                 "n_embed": vq.projection_dim,
                                                                 "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "params": {"image_token_embed": vq.image_token_embed_dim,
                                                             "image_token_size": vq.num_embeddings,
                                                             "n_embed": vq.projection_dim}},
    }


def write_original_folder(folder: Path, model, shards: int = 1) -> Path:
    """The ``deepseek-ai`` layout: original config.json, ``pytorch_model.bin`` (or ``shards`` files with an
    index) under the original names, tokenizer files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {original_key(k): v.detach().clone() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd["language_model.lm_head.weight"] = model.lm_head.weight.detach().clone()
    sd["gen_vision_model.quantize.codebook_used"] = torch.zeros(4)  # a training statistic the release carries
    (folder / "config.json").write_text(json.dumps(original_config(model.config), indent=1))
    if shards == 1:
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        keys = sorted(sd)
        weight_map = {}
        for i in range(shards):
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            part = {k: sd[k] for k in keys[i::shards]}
            torch.save(part, folder / name)
            weight_map.update({k: name for k in part})
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    tiny_tokenizer().save_pretrained(folder)
    return folder
