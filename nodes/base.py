"""Base class of the pack's nodes: a V3 ComfyNode whose dropdown values are checked when a prompt is queued.

ComfyUI 0.3.75 validates dropdowns only for classic (list-typed) inputs; a V3 Combo accepts any string
at POST /prompt. Each subclass gets a ``validate_inputs`` naming exactly its Combo inputs, so an unknown
value comes back in ``node_errors`` (and the built-in min/max checks of the other inputs stay on: ComfyUI
skips them only for inputs the validator names). A node lists further inputs in ``CHECKED_INPUTS`` and
checks them in ``check_input`` (e.g. an output path), so a doomed save fails at queue time, not after the
generation it would have cost.

``execute`` itself checks every input against the schema (present unless optional, the Python type a widget
or wire carries, the widget's range, a dropdown's choices) before it runs, so a node called directly from
Python, without the server's validation, fails with the same kind of one-line message, not a raw error deep
inside.
"""
from __future__ import annotations

import functools
import inspect
import math

from comfy_api.latest import io

from scalingar_core.errors import echo

from .types import WIRE_VALUES


def _range_problem(spec, value) -> str | None:
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if (low is not None and value < low) or (high is not None and value > high):
        return f"must be between {low} and {high}"
    return None


def value_problem(spec, value) -> str | None:
    """What is wrong with ``value`` for input ``spec`` (a schema input), or None."""
    if isinstance(spec, io.Combo.Input):
        return None if value in spec.options else f"is not one of the choices: {', '.join(map(str, spec.options))}"
    if isinstance(spec, io.Boolean.Input):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(spec, io.Int.Input):
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be a whole number"
        return _range_problem(spec, value)
    if isinstance(spec, io.Float.Input):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return "must be a finite number"
        return _range_problem(spec, value)
    if isinstance(spec, io.String.Input):
        return None if isinstance(value, str) else "must be text"
    wire = WIRE_VALUES.get(str(spec.io_type))
    if wire is not None and not wire[1](value):
        return f"must be {wire[0]}, got {type(value).__name__}"
    return None


def input_problem(schema, values: dict, skip: tuple[str, ...] = ()) -> str | None:
    """The first problem with a node's inputs (``values`` by input id), as one line naming node and input;
    the inputs in ``skip`` are only checked for presence."""
    for spec in schema.inputs or []:
        value = values.get(spec.id)
        if value is None:
            if not spec.optional:
                return f"{schema.display_name}: input {spec.id} is missing; connect it or give a value"
            continue
        problem = None if spec.id in skip else value_problem(spec, value)
        if problem:
            shown = echo(value) if isinstance(value, (str, int, float, bool)) else f"<{type(value).__name__}>"
            return f"{schema.display_name}: {spec.id}={shown} {problem}"
    return None


def _checked(execute):
    """``execute`` that first checks its inputs against the node's schema (a ValueError names the problem)."""
    signature = inspect.signature(execute)
    var_kw = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)

    @functools.wraps(execute)
    def checked(node_cls, *args, **kwargs):
        values = signature.bind_partial(node_cls, *args, **kwargs).arguments
        if var_kw:  # the config nodes take their fields as **values
            values = {**values.pop(var_kw, {}), **values}
        problem = input_problem(node_cls.define_schema(), values, node_cls.SELF_CHECKED_INPUTS)
        if problem:
            raise ValueError(problem)
        return execute(node_cls, *args, **kwargs)
    checked.scalingar_checked = True
    return checked


def _combos(schema) -> list:
    return [i for i in schema.inputs or [] if isinstance(i, io.Combo.Input)]


class ScalingARNode(io.ComfyNode):
    CHECKED_INPUTS: tuple[str, ...] = ()
    SELF_CHECKED_INPUTS: tuple[str, ...] = ()  # checked by execute itself, more precisely than the schema can

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
        execute = cls.execute.__func__  # also an inherited one (the config nodes share theirs)
        if not getattr(execute, "scalingar_checked", False):
            cls.execute = classmethod(_checked(execute))
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
