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

    specs = [get_model(name) for name in model_names()]
    width = max(len(s.name) for s in specs)
    shown = max(len(s.display_name) for s in specs)
    for spec in specs:
        kind = "epochs" if spec.epochs else "no epochs"
        print(f"{spec.name:<{width}} {spec.display_name:<{shown}} inputs "
              f"{'+'.join(spec.inputs):<8} settings {spec.params_section:<9} {kind:<9} "
              f"{spec.description}")
    return 0
