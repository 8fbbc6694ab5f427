"""SimpleAR (0.5B, 1.5B; SFT and RL) text-to-image: a Qwen2 decoder through transformers'
``Qwen2ForCausalLM`` whose vocabulary ends in 64,000 Cosmos DV8x16x16 codes, decoded by
:mod:`scalingar_core.models.cosmos`.

``prompt`` (SimpleAR's prompt frame and the special tokens), ``session`` (cached CFG decoding of rows of
different lengths), ``model`` (the engine's ARModel, loading a folder, memory) and ``presets`` (registry
entries). Facts: ``docs/models_cosmos_simplear.md``.
"""
