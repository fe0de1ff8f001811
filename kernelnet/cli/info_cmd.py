"""``kernelnet info``."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model: str, as_json: bool) -> None:
    """Show what MODEL (an .onnx / .engine file or a run directory) is: kind, kernel, shapes, opset, metadata."""
    from kernelnet.cli.common import print_pairs
    from kernelnet.runtime.describe import describe

    details = describe(model)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    print_pairs([(key, json.dumps(value, separators=(", ", ": ")) if isinstance(value, (list, dict)) else value)
                 for key, value in details.items()])
