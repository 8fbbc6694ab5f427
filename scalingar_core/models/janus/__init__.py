"""Janus-Pro (1B, 7B) text-to-image through transformers' own ``JanusForConditionalGeneration`` modules.

``configs`` (the published architectures), ``weights`` (which tensors text-to-image needs, in both the
transformers and the original ``deepseek-ai`` layout), ``session`` (cached CFG decoding with row
compaction), ``model`` (the engine's ARModel and loading a folder) and ``presets`` (registry entries).
Only the language model, the generation embedding/aligner/head and the VQ decoder are ever built: the
SigLIP vision tower and its aligner serve image understanding and never leave the meta device.
"""
