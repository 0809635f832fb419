"""A lab pool driven through its command line, as tests see it."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "plugins")]))
PY27 = os.environ.get("PY27", "/root/.pyenv/versions/2.7.18/bin/python")


def lab_command(*args):
    process = subprocess.run([sys.executable, "-m", "tests.lab"] + list(args), cwd=REPO,
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=120)
    assert "Traceback" not in process.stderr, process.stderr
    return process.returncode, json.loads(process.stdout)


class RunningLab(object):
    def __init__(self, state, description):
        self.state = state
        self.description = description
        self.url = description["lun_urls"][0]

    def __call__(self, *args):
        code, answer = lab_command(*(list(args) + ["--state", self.state]))
        assert code == 0, answer
        return answer

    def client(self, *argv):
        """Run ``argv`` in the client namespace: (exit code, stdout)."""
        process = subprocess.run(["ip", "netns", "exec", self.description["client_netns"]]
                                 + list(argv), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, universal_newlines=True,
                                 timeout=60)
        return process.returncode, process.stdout

    def io(self, *args):
        code, output = self.client(sys.executable, "-m", "tests.lab.iscsi_io", self.url,
                                   *args)
        assert code in (0, 1), output
        return json.loads(output)

    def vpd(self, page):
        return self.io("vpd", "--page", page)["hex"]

    def roles(self):
        status = self("status")
        return dict((name, host["result"]["role"] if host["ok"] else None)
                    for name, host in status["hosts"].items())


def start_lab(tmp_path, *options):
    state = str(tmp_path / "lab")
    code, description = lab_command("up", "--state", state, *options)
    assert code == 0, description
    return RunningLab(state, description)
