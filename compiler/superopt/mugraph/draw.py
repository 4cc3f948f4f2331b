"""A picture of a µGraph as standalone SVG: inputs on the left, one box per kernel (a block
graph lists its grid, loop, iterators, tile ops and savers), arrows along the kernel tensors."""

from __future__ import annotations

from html import escape

from .model import MuGraph

BOX_WIDTH = 300
LINE = 16
GAP = 60
PAD = 10


def _kernel_lines(op) -> list[str]:
    if op.op != "block":
        attrs = ", ".join(f"{k}={v}" for k, v in op.attrs.items())
        return [f"{op.op}" + (f" ({attrs})" if attrs else "")]
    block = op.block
    lines = [f"block grid={list(block.grid)} loop={block.forloop_range}"]
    lines += [f"  in {i.tile} <- #{i.source} imap={list(i.imap)} fmap={i.fmap}"
              for i in block.inputs]
    lines += [f"  {o.output} = {o.op}({', '.join(o.inputs)})" for o in block.ops]
    lines += [f"  out {o.tile} omap={list(o.omap)}" for o in block.outputs]
    return lines


def mugraph_svg(graph: MuGraph) -> str:
    """The SVG document (a string) for `graph`."""
    boxes, x = {}, PAD
    inputs_height = LINE * (len(graph.inputs) + 1)
    for name_index, name in enumerate(graph.inputs):
        boxes[name] = (x, PAD + LINE * name_index, 120, LINE)
    x += 120 + GAP
    height = inputs_height
    kernel_boxes = []
    for op in graph.ops:
        lines = _kernel_lines(op)
        box = (x, PAD, BOX_WIDTH, LINE * len(lines) + PAD)
        kernel_boxes.append((op, lines, box))
        for out in op.outputs:
            boxes[out] = box
        height = max(height, box[3] + 2 * PAD)
        x += BOX_WIDTH + GAP
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{x + 60}" height="{height + 20}" '
             'font-family="monospace" font-size="11">',
             '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>']
    for name, (bx, by, _, _) in boxes.items():
        if name in graph.inputs:
            shape = "x".join(map(str, graph.inputs[name]))
            parts.append(f'<text x="{bx}" y="{by + 12}">{escape(name)} [{shape}]</text>')
    for op, lines, (bx, by, bw, bh) in kernel_boxes:
        fill = "#e8f0fe" if op.op == "block" else "#f1f3f4"
        parts.append(f'<rect x="{bx}" y="{by}" width="{bw}" height="{bh}" rx="6" '
                     f'fill="{fill}" stroke="#444"/>')
        for k, line in enumerate(lines):
            parts.append(f'<text x="{bx + 6}" y="{by + 14 + LINE * k}" '
                         f'xml:space="preserve">{escape(line)}</text>')
        for k, src in enumerate(op.inputs):
            sx, sy, sw, sh = boxes[src]
            y0 = sy + (8 if src in graph.inputs else sh / 2)
            parts.append(f'<line x1="{sx + sw}" y1="{y0}" x2="{bx}" y2="{by + 10 + 6 * k}" '
                         'stroke="#666" marker-end="url(#arrow)"/>')
    for name in graph.outputs:
        bx, by, bw, bh = boxes[name]
        parts.append(f'<line x1="{bx + bw}" y1="{by + bh / 2}" x2="{bx + bw + 40}" '
                     f'y2="{by + bh / 2}" stroke="#666" marker-end="url(#arrow)"/>')
        parts.append(f'<text x="{bx + bw + 4}" y="{by + bh / 2 - 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
