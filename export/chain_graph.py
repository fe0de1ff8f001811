"""A chain's graph: each pass's graph (:func:`kernelnet.export.onnx_graph.build_graph`) spliced after the previous.

Pass i's tensors and initializers are renamed ``p<i>/…`` (i from 2), its ``input`` becomes the previous pass's output
and only the last pass keeps the name ``output``: one graph, same input and output contract as a single pass
(N, 1, H, W), dynamic batch, height and width. Each pass pads its own input with its own border, so the graph
computes the chain exactly as the numpy reference does, pass after pass.
"""

from __future__ import annotations

from typing import Any

from kernelnet.runtime.spec import FilterSpec


def _rename(graph: Any, prefix: str, source: str, input_name: str, output_name: str) -> None:
    """Rename ``graph``'s tensors in place: ``input_name`` → ``source``, ``output_name`` kept, others prefixed."""
    def name(n: str) -> str:
        if n == input_name:
            return source
        return n if n in ("", output_name) else prefix + n

    for node in graph.node:
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
        if node.name:
            node.name = prefix + node.name
    for init in graph.initializer:
        init.name = name(init.name)


def splice_passes(spec: FilterSpec, build: Any, **options: Any) -> Any:
    """The ModelProto of ``spec``'s passes in order; ``build(pass_spec, **options)`` makes each pass's graph."""
    from kernelnet.export.onnx_graph import INPUT_NAME, OUTPUT_NAME

    metadata = options.pop("metadata", None)
    passes = spec.passes
    head = build(passes[0], **options)
    graph = head.graph
    previous = "p1/output"
    for node in graph.node:
        node.output[:] = [previous if n == OUTPUT_NAME else n for n in node.output]
    for i, later in enumerate(passes[1:], 2):
        part = build(later, **options).graph
        last = i == len(passes)
        out = OUTPUT_NAME if last else f"p{i}/output"
        _rename(part, f"p{i}/", previous, INPUT_NAME, OUTPUT_NAME)
        for node in part.node:
            node.output[:] = [out if n == OUTPUT_NAME else n for n in node.output]
        graph.node.extend(part.node)
        graph.initializer.extend(part.initializer)
        previous = out
    if metadata:
        from onnx import helper

        helper.set_model_props(head, metadata)
    return head
