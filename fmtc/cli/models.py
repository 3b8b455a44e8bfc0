"""``fmtc models``: the registered models, their inputs and where their settings live."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fmtc models``."""
    parser = subparsers.add_parser("models", help="list the registered models",
                                   description="Every model of the registry "
                                               "(fmtc.predict.registry): name, inputs, plan "
                                               "section of its hyper-parameters.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per model."""
    from fmtc.predict.registry import get_model, model_names

    for name in model_names():
        spec = get_model(name)
        kind = "epochs" if spec.epochs else "no epochs"
        print(f"{name:<12} {spec.display_name:<13} inputs {'+'.join(spec.inputs):<8} "
              f"settings {spec.params_section:<9} {kind:<9} {spec.description}")
    return 0
