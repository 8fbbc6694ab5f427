"""The toy world: procedural shapes (``render``), captions and specs (``prompts``), an exact checker
(``checker``), a lossless patch tokenizer (``tokenizer``), a tiny caption encoder (``text``) and the bundled
``toy-shapes`` text-to-image model (``model``). Submodules are imported on demand (torch only where needed).
"""
