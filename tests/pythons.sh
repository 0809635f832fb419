# shellcheck shell=sh
# The interpreters the tests run on; sourced by tests/install-deps.sh and the Makefile's shell.
pyenv_root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo /root/.pyenv)}
PY27=${PY27:-$pyenv_root/versions/2.7.18/bin/python}
PY36=${PY36:-$pyenv_root/versions/3.6.15/bin/python}
PY3=${PY3:-$pyenv_root/versions/3.11.7/bin/python}
