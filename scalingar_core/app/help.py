"""Help texts shared by the command line and the ComfyUI nodes, so they say the same thing."""

COMPILE_HELP = ("torch.compile the decode step (one graph per batch size; CUDA graphs on a GPU) and the engine's "
                "step (one graph per set of images decoded together). Pays off only on "
                "a GPU and over many images: the first image of each batch size waits for the compilation, "
                "minutes on a CPU, where the compiled step is barely faster. Off by default.")
