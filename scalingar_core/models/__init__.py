"""Model families as equals (``llamagen``, ``janus``, ``toy``) over shared code: the protocol the engine
drives, the registry of named models, downloads, safe checkpoint reading, devices and dtypes, the LlamaGen GPT
architecture with its static-cache session (shared by LlamaGen, AR-GRPO and the toy models) and the VQ-16
tokenizer (shared by LlamaGen, AR-GRPO and Janus-Pro)."""
