# make demo   installs what it needs, runs the two-host lab demo
# make test   installs test dependencies, runs every test on Python 2.7, 3.6 and 3.x
# make rpm    dist/iscsi-ha-VERSION-RELEASE.py2.noarch.rpm and ...py3.noarch.rpm for dom0 (one:
#             PYTHON=python2 for XCP-ng 8.2 / XenServer 7, python3 for XCP-ng 8.3 / XenServer 8;
#             RELEASE=1 by default)
# make bench  how dark planned switchovers and master failures are for one long-lived
#             session, product vs. polling baseline (BENCH_ARGS: see README, Performance)
# make faults randomized faults over the lab, invariants checked from outside, every
#             acknowledged write read back (FAULTS_ARGS: see README, Fault injection)
SHELL := /bin/bash
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo /root/.pyenv)
PY27 ?= $(PYENV_ROOT)/versions/2.7.18/bin/python
PY36 ?= $(PYENV_ROOT)/versions/3.6.15/bin/python
PY3 ?= $(PYENV_ROOT)/versions/3.11.7/bin/python
export PY27 PY36 PY3
PYTEST_ARGS ?=

.PHONY: deps test test-py27 test-py36 test-py3 demo bench faults rpm clean

deps:
	sh tests/install-deps.sh

# Python 2.7 and 3.6 run what dom0 runs (the library and the plugin); the lab,
# its XAPI simulator and the DRBD double are Python 3 test infrastructure.
test: deps
	$(MAKE) --no-print-directory test-py27 test-py36 test-py3

test-py27:
	$(PY27) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests --ignore=tests/lab

test-py36:
	$(PY36) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests --ignore=tests/lab

test-py3:
	$(PY3) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

demo: deps
	$(PY3) -m tests.lab.demo

BENCH_ARGS ?=
bench: deps
	$(PY3) -m tests.lab.bench $(BENCH_ARGS)

FAULTS_ARGS ?=
# The hostile-input suite first (profile faults: 800 examples a test); its count goes
# into the fault runner's summary.
HOSTILE_REPORT ?= /tmp/iscsi-ha-hostile.json
faults: deps
	$(PY3) -m tests.support.hostile --profile faults --json $(HOSTILE_REPORT)
	$(PY3) -m tests.lab.faults --hostile-report $(HOSTILE_REPORT) $(FAULTS_ARGS)

# Each flavour is installed by the Python version of its dom0 (2.7, 3.6) into its
# site-packages; templates/iscsi-ha.spec says why.
PYTHON ?= python2 python3
RELEASE ?= 1
DIST ?= dist
RPM_BUILD ?= build/rpm
rpm:
	@set -e; for flavour in $(PYTHON); do \
	    case $$flavour in python2) python=$(PY27) ;; python3) python=$(PY36) ;; \
	        *) echo "make rpm: PYTHON is python2 or python3, not $$flavour" >&2; exit 2 ;; esac; \
	    rm -rf "$(RPM_BUILD)/$$flavour"; \
	    rpmbuild -bb --quiet --define "_topdir $(abspath $(RPM_BUILD))/$$flavour" \
	        --define "_rpmdir $(abspath $(DIST))" \
	        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	        --define "source $(CURDIR)" --define "rpm_release $(RELEASE)" \
	        --define "flavour $$flavour" \
	        --define "build_python $$python" templates/iscsi-ha.spec; \
	done; ls $(DIST)/*.rpm

clean:
	$(PY3) -m tests.support.netns cleanup
	rm -rf .deps build *.egg-info
