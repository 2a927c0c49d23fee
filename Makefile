# shopsense: `make run` starts the suite on this machine, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
GEN := shared/gen
GEN_STAMP := $(GEN)/.stamp
MODEL := triton_models/text_encoder/1/model.onnx
# The team's real data beside the repository (SHOPSENSE_SHARED_DATA overrides).
SHARED_DATA ?= $(or $(SHOPSENSE_SHARED_DATA),../shared/data)

.DEFAULT_GOAL := help
.PHONY: help venv protos models run train demo test test-unit test-integration test-system k8s eval bench bench-rerank bench-scale bench-rpc bench-cross-encoder bench-feedback bench-experiments bench-recommend bench-recs certs lint format clean images test-images

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with every dependency (torch from the local CPU wheel first)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so nothing below can pull a CUDA build onto a CPU machine
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[export,dev]"
	echo "$(CURDIR)/$(GEN)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/shopsense_gen.pth
	touch $@

protos: $(GEN_STAMP) ## generate the gRPC stubs from protos/ into shared/gen (not committed)
$(GEN_STAMP): $(PROTOS) $(STAMP)
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(PY) -m grpc_tools.protoc -I protos --python_out=$(GEN) --grpc_python_out=$(GEN) --pyi_out=$(GEN) $(PROTOS)
	touch $@

models: $(MODEL) ## export all-MiniLM-L6-v2 to ONNX into triton_models/text_encoder/1/
$(MODEL): | $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m shared.training.export --model text_encoder --version 1

certs: venv ## a development CA and certificates under var/certs/ (services: tls.crt/tls.key, clients: client.crt/client.key, ca.crt)
	$(PY) -m shared.rpc.tls var/certs

run: venv protos models ## start Triton and every service, load the demo store if empty; Ctrl-C stops all
	HF_HUB_OFFLINE=1 $(PY) -m shared.cli.main up

train: venv protos models ## fine-tune the three models on the demo store and publish them (about 30 min on 2 cores)
	HF_HUB_OFFLINE=1 $(PY) -m shared.cli.train

demo: venv protos models ## the closed loop on SYNTHETIC shoppers: simulate, retrain from clicks, A/B, report, promote (about 30 min)
	HF_HUB_OFFLINE=1 $(PY) -m shared.cli.demo $(DEMO_ARGS)

test: venv protos models ## unit, integration and system tests (real Triton, real weights, SQLite and PostgreSQL)
	@# A throwaway PostgreSQL (Debian's package, installed if missing) for the feedback store's
	@# production path; without one (no root, no package) those tests say why they skip.
	@# kubectl renders deploy/overlays/* for tests/unit/test_deploy_manifests.py (installed if
	@# missing; without it those tests skip here and fail under CI=true).
	bash .ci/ensure-kubectl || true
	eval "$$(bash .ci/start-postgres || true)"; HF_HUB_OFFLINE=1 $(PY) -m pytest

test-unit: venv protos
	bash .ci/ensure-kubectl || true
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/unit

k8s: venv ## render every Kubernetes overlay (deploy/) and check it: schemas, policy, names the code reads
	bash .ci/ensure-kubectl
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests/unit/test_deploy_manifests.py

test-integration: venv protos models
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/integration

test-system: venv protos models
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/system

images: venv ## build the container images with podman (base from debootstrap; deploy/images/README.md); as root
	deploy/images/build.sh

test-images: venv protos models ## the suite from the images: search, recommend, feedback from outside (after make images)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m images tests/system/test_images.py

eval: venv protos models ## nDCG/Recall/MRR on the demo store and intent accuracy on real WANDS queries
	HF_HUB_OFFLINE=1 $(PY) -m shared.cli.evaluate

bench: venv protos models ## Search through the suite against the in-process floor, 1 and 8 clients, then with TLS + keys (BENCH_ARGS="--json OUT")
	HF_HUB_OFFLINE=1 $(VENV)/bin/shopsense bench search $(BENCH_ARGS)

bench-rerank: venv protos models ## Search with the cross-encoder on, step by step: shorter pairs, a pruned model, the depth from a deadline, the result cache (after make train; BENCH_ARGS="--json OUT")
	HF_HUB_OFFLINE=1 $(VENV)/bin/shopsense bench rerank $(BENCH_ARGS)

bench-scale: venv ## retrieval in process (exact, HNSW) and on milvus-lite over one SYNTHETIC catalog: ingest, memory, Retrieve p50/p99, dense Recall@100 vs exact (BENCH_ARGS="--products 1000000")
	$(PY) -m shared.bench.scale $(BENCH_ARGS)

bench-rpc: venv protos ## one gRPC hop's cost, layer by layer: bare grpc, our server stack, our channel, a 100-candidate reply (and parsing it in process)
	HF_HUB_OFFLINE=1 $(PY) -m shared.bench.rpc $(BENCH_ARGS)

bench-cross-encoder: venv protos models ## int8 vs fp32 agreement and speed; Triton rerank vs PyTorch eager
	HF_HUB_OFFLINE=1 $(PY) -m shared.bench.cross_encoder

bench-experiments: venv protos models ## A/A over 20 seeds; serving vs reversed as A/B and interleaving: verdicts, shoppers for 80% power, guard rails (SYNTHETIC shoppers)
	HF_HUB_OFFLINE=1 $(PY) -m shared.bench.experiments

bench-recommend: venv protos models ## Recommend through the suite against the same pipeline in one process, on the imported Online Retail store (README)
	HF_HUB_OFFLINE=1 $(PY) -m shared.bench.recommend

bench-recs: venv ## sequence_recommender vs SASRec-ID on Amazon Scientific (full ranking, valid; TEST=file adds a test split)
	HF_HUB_OFFLINE=1 $(PY) -m shared.bench.sequence --data $(SHARED_DATA)/amazon_scientific $(if $(TEST),--test $(TEST)) $(if $(JSON),--json $(JSON))

bench-feedback: venv protos ## feedback ingestion rate into SQLite (batches, duplicates, one stream), nothing lost
	$(PY) -m shared.bench.feedback

lint: venv ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## remove build outputs (stubs, exported models, state); keeps .venv
	rm -rf $(GEN) var triton_models/*/[0-9]*
