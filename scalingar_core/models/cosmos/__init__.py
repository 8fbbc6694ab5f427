"""NVIDIA's Cosmos discrete tokenizer DV8x16x16, decoder side, for one frame (SimpleAR's image codes).

``jit_reader`` reads the tensors of the published TorchScript files without running them; ``decoder``
is the inverse FSQ, ``post_quant_conv`` and diffusers' Cosmos decoder, with the upstream weight names mapped
onto it strictly.
"""
