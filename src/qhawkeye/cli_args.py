"""Command-line flags generated from the typed config dataclasses (one flag per field, help from the field).

Light on purpose: no torch, so ``qhawkeye --help`` and every subcommand's flag parsing stay fast.
"""

from __future__ import annotations

import argparse


def add_dataclass_arguments(
    parser, cls, skip: tuple[str, ...] = (), defaults: dict | None = None, suppress_defaults: bool = False
) -> None:
    """One ``--flag`` per dataclass field (``snake_case`` -> ``--kebab-case``), help text from the field.

    ``X | None`` becomes ``X``; ``Literal`` becomes choices; ``list[X]`` takes one or more values and
    ``tuple[X, X]`` exactly two; ``bool`` gets ``--flag/--no-flag``; a field without a default is a required
    flag. ``defaults`` overrides shown and used defaults; ``suppress_defaults`` leaves absent flags out of the
    namespace, so the dataclass's own defaults apply. ``parser`` may be an argument group.
    """
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None -> X
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        default = (defaults or {}).get(f.name, default)
        flag, text = f"--{f.name.replace('_', '-')}", f.metadata.get("help", "").replace("%", "%%")
        required = default is dataclasses.MISSING
        if "default" not in text and not required:
            text += f" (default: {default})"
        options: dict = {"dest": f.name, "help": text}
        if required:
            options["required"] = True
        else:
            options["default"] = argparse.SUPPRESS if suppress_defaults else default
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif origin is typing.Literal:
            options.update(type=str, choices=list(args))
        elif origin in (list, tuple):
            options.update(type=args[0], nargs="+" if origin is list else len(args))
        else:
            options["type"] = kind
        parser.add_argument(flag, **options)


def dataclass_from_args(cls, args, **extra):
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in vars(args).items() if k in names}, **extra)
