"""Base class of the pack's nodes: a V3 ComfyNode whose dropdown values are checked when a prompt is queued.

ComfyUI 0.3.75 validates dropdowns only for classic (list-typed) inputs; a V3 Combo accepts any string
at POST /prompt. Each subclass gets a ``validate_inputs`` naming exactly its Combo inputs, so an unknown
value comes back in ``node_errors`` (and the built-in min/max checks of the other inputs stay on: ComfyUI
skips them only for inputs the validator names). A node lists further inputs in ``CHECKED_INPUTS`` and
checks them in ``check_input`` (e.g. an output path), so a doomed save fails at queue time, not after the
generation it would have cost.
"""
from __future__ import annotations

import inspect

from comfy_api.latest import io

from scalingar_core.errors import echo


def _combos(schema) -> list:
    return [i for i in schema.inputs or [] if isinstance(i, io.Combo.Input)]


class ScalingARNode(io.ComfyNode):
    CHECKED_INPUTS: tuple[str, ...] = ()

    @classmethod
    def check_input(cls, name: str, value) -> str | None:
        """The problem with input ``name`` (one of ``CHECKED_INPUTS``) at queue time, or None."""
        return None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # ComfyUI runs each node through a (locked) clone of its class that copies the class dict: the
        # clone already carries what we set here, so only a real node definition is processed.
        if "_validators_set" in cls.__dict__ or cls.__dict__.get("ABSTRACT"):
            return  # a clone, or a shared base that is not a node itself
        cls._validators_set = True
        names = [i.id for i in _combos(cls.define_schema())] + list(cls.CHECKED_INPUTS)
        if not names:
            return

        def validate_inputs(node_cls, **values):
            for combo in _combos(node_cls.define_schema()):  # options may change (new local checkpoints)
                value = values.get(combo.id)
                if value is not None and value not in combo.options:
                    return f"{combo.id}={echo(value)} is not one of the choices: {', '.join(map(str, combo.options))}"
            for name in node_cls.CHECKED_INPUTS:
                problem = node_cls.check_input(name, values.get(name)) if values.get(name) is not None else None
                if problem:
                    return problem
            return True

        # ComfyUI reads the validator's positional argument names to know which inputs it covers.
        params = [inspect.Parameter("node_cls", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]
        validate_inputs.__signature__ = inspect.Signature(params)
        cls.validate_inputs = classmethod(validate_inputs)
