"""Regenerate examples/block.onnx, the `mlc optimize` demo: a small transformer-style block.

    x -> rms_norm -> (W_in) -> gated MLP silu(h W1) * (h W2) -> (W_out) -> + x -> softmax head

Run with the project's venv: .venv/bin/python examples/make_block.py
"""

from pathlib import Path

import torch


class Block(torch.nn.Module):
    def __init__(self, width=64, hidden=128, classes=16):
        super().__init__()
        self.w_in = torch.nn.Parameter(torch.randn(width, width) / width ** 0.5)
        self.w1 = torch.nn.Parameter(torch.randn(width, hidden) / width ** 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(width, hidden) / width ** 0.5)
        self.w_out = torch.nn.Parameter(torch.randn(hidden, width) / hidden ** 0.5)
        self.head = torch.nn.Parameter(torch.randn(width, classes) / width ** 0.5)

    def forward(self, x):
        h = (x / torch.sqrt((x * x).mean(-1, keepdim=True))) @ self.w_in
        y = torch.nn.functional.silu(h @ self.w1) * (h @ self.w2)
        z = x + y @ self.w_out
        return torch.softmax(z @ self.head, dim=-1)


if __name__ == "__main__":
    torch.manual_seed(0)
    out = Path(__file__).with_name("block.onnx")
    torch.onnx.export(Block().eval(), (torch.randn(16, 64),), str(out), input_names=["x"],
                      output_names=["probs"], dynamo=False, opset_version=18)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
