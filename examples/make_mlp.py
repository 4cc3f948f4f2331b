"""Regenerate examples/mlp.onnx, the bundled demo model (a 3-layer MLP classifier on 8x8 digits).

Run with the project's venv: .venv/bin/python examples/make_mlp.py
"""

from pathlib import Path

import torch


class DigitsMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.LayerNorm(128),
            torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


if __name__ == "__main__":
    torch.manual_seed(0)
    model = DigitsMLP().eval()
    out = Path(__file__).with_name("mlp.onnx")
    torch.onnx.export(model, (torch.randn(4, 64),), str(out), input_names=["x"],
                      output_names=["probs"], dynamo=False, opset_version=17)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
