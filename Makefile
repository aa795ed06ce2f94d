# The two commands of README.md: `make run` and `make test`.
CARGO ?= cargo
AGENT_TARGET := x86_64-unknown-linux-gnu
AGENT_BIN := target/$(AGENT_TARGET)/release/den-agent
# Den's binaries, linked statically: one release build serves the host, the guests and the KVM lab.
BIN := target/$(AGENT_TARGET)/release

.PHONY: run test deps build agent lint bench bench-vmm bench-lab bench-dend bench-sshgw bench-web bench-docker bench-apps bench-system bench-system-lab clean

## run: install missing Debian packages, build Den, build the default guest images, check the host,
## then run the daemon (dend) in the foreground (with packaging/den.toml, the business OS
## included, when /etc/den/den.toml does not exist)
run: deps build
	$(BIN)/den up
	$(BIN)/dend $$([ -e /etc/den/den.toml ] || echo --config packaging/den.toml)

## test: the whole test suite (lint, unit tests, end-to-end tests with real QEMU guests)
# No incremental caches: on a clean clone they only fill the disk (gigabytes over every test binary).
test: export CARGO_INCREMENTAL := 0
test: deps agent lint
	$(CARGO) build --workspace
	DEN_SCHEMATHESIS=$$(./scripts/install-test-tools.sh) ./scripts/test.sh

deps:
	@./scripts/install-deps.sh

build: agent

# den-agent runs as PID 1 of guests; den-vmm, den-jailer, dend and den run inside the KVM lab guest: all are
# linked statically, and the same binaries run on the host (`make run`).
agent:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p den-agent -p den-vmm -p den-jailer -p dend -p den-cli --target $(AGENT_TARGET)

lint:
	$(CARGO) fmt --all -- --check
	./scripts/check-deps.py
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: image build and agent channel numbers, printed as a table
bench: deps build
	./bench/agent-bench.sh

## bench-vmm: den-vmm start-up, memory overhead and 50 VMs at once on this host's /dev/kvm, as a table
bench-vmm: deps
	./bench/vmm-bench.sh

## bench-dend: dend API latency with 1,000 VMs, idle memory, create-to-agent-ready, as a table
bench-dend: deps
	./bench/dend-bench.sh

## bench-sshgw: SSH gateway session setup and scp throughput versus direct to the guest's sshd, as a table
bench-sshgw: deps
	./bench/sshgw-bench.sh

## bench-docker: Docker bridge call latency, run, log throughput versus inside the sandbox, cold wake, as a table
bench-docker: deps
	./bench/docker-bench.sh

## bench-apps: LPK package validation (time, memory), install-to-HTTP-200, restart, memory per service, as a table
bench-apps: deps
	./bench/apps-bench.sh

## bench-system: business OS update to committed, bad boot to rolled back, dend restart, as a table
bench-system: deps
	./bench/system-bench.sh

## bench-system-lab: the same on den-vmm, in the KVM lab
bench-system-lab: deps
	./bench/system-bench.sh --lab

## bench-web: web console JavaScript size, time to a usable VM list, console keystroke echo, as a table
bench-web: deps
	./bench/web-bench.sh

## bench-lab: den-vmm against QEMU microvm with KVM in the KVM lab (boot to init and where it goes, virtio-fs, disks, dev boot to agent), as tables
bench-lab: deps
	./bench/lab-bench.sh

clean:
	$(CARGO) clean
