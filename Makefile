# mlc developer targets. `make demo` and `make test` install what they need.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first, so nothing below pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	# -P: the repo root stays off sys.path, so its kernels/ folder cannot shadow the `kernels`
	# package that transformers imports (mlc itself is installed as mlc.kernels).
	$(PY) -P -m pytest -q -m "not gpu" tests

demo: $(STAMP)
	$(VENV)/bin/mlc inspect workload:rmsnorm_matmul
	$(VENV)/bin/mlc import examples/mlp.onnx --out build/demo/mlp
	$(VENV)/bin/mlc run build/demo/mlp --random --seed 0 --output build/demo/mlp_out.npz
	$(VENV)/bin/mlc inspect build/demo/mlp
	$(VENV)/bin/mlc verify fixture:rmsnorm_matmul --against workload:rmsnorm_matmul
	$(VENV)/bin/mlc compile fixture:rmsnorm_matmul_small --out build/demo/rms --target h100
	$(VENV)/bin/mlc run build/demo/rms --random --seed 0
	$(VENV)/bin/mlc optimize examples/block.onnx --out build/demo/block --budget 60
	$(VENV)/bin/mlc quantize examples/mlp.onnx --gmm --bits 4 --out build/demo/mlp_q4 --export-onnx
	$(VENV)/bin/mlc run build/demo/mlp_q4 --random --seed 0
	$(VENV)/bin/mlc plan serve --demand examples/demand.json --out build/demo/serve
	$(VENV)/bin/mlc partition workload:multibranch_small --devices 3 --batch 8 --micro-batch 2 --out build/demo/part
	$(VENV)/bin/mlc train build/demo/part --steps 3 --check
	$(VENV)/bin/mlc plan coserve --model llama-3.1-8b --gpu a100-80gb --gpus 4 --rate 4 --slo-tpot 45ms --out build/demo/coserve
	$(VENV)/bin/mlc serve build/demo/coserve --model tiny-llama --requests examples/requests.jsonl --finetune examples/finetune.jsonl --epochs 3

bench: $(STAMP)
	$(PY) bench/onnx_conformance.py --out build/bench/onnx_conformance.json
	$(PY) bench/hostile.py --out build/bench/hostile.json
	$(PY) bench/frontends.py --out build/bench/frontends.json
	$(PY) bench/mugraph_verify.py --out build/bench/mugraph_verify.json
	$(PY) bench/mugraph_kernels.py --out build/bench/mugraph_kernels.json
	$(PY) bench/mugraph_cost.py --gpu h100 --out build/bench/mugraph_cost.json
	$(PY) bench/search.py --budget 60 --out build/bench/search.json
	$(PY) bench/formal.py --out build/bench/formal.json
	$(PY) bench/symbolic.py --budget 30 --out build/bench/symbolic.json
	$(PY) bench/real_models.py --budget 30 --out build/bench/real_models.json
	$(PY) bench/workload_sweep.py --budget 5 --out build/bench/workload_sweep.json
	$(PY) bench/quant.py --out build/bench/quant.json
	$(PY) bench/coral.py --out build/bench/coral.json
	$(PY) bench/coserve.py --out build/bench/coserve.json
	$(PY) bench/coserve_cpu.py --out build/bench/coserve_cpu.json
	$(PY) bench/partition.py --out build/bench/partition.json
	$(VENV)/bin/mlc partition workload:multibranch_small --devices 4 --batch 8 --micro-batch 2 --out build/bench/multibranch4
	$(PY) bench/partition_run.py build/bench/multibranch4 build/bench/multibranch4/sequential --steps 20 --out build/bench/partition_run.json

lint: $(STAMP)
	$(VENV)/bin/ruff check compiler runtime kernels cli specs tests bench

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
