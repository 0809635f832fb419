"""No subprocess call anywhere uses a shell: read from the source, and seen at run time.

Every process iscsi-ha starts goes through iscsi_ha.commands, which takes argv
lists only, so a value from a config, an argument or XAPI is one argv element
whatever it holds.
"""

import ast
import io
import os

import pytest

from iscsi_ha import commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_FILES = ["plugins/iscsi-ha", "plugins/iscsi-ha-fence-peer", "controller/iscsi-ha",
               "controller/iscsi-ha-controller", "setup.py"]
# Calls that hand a string to a shell, or start a process some other way.
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "popen2"), ("os", "popen3"),
               ("os", "execl"), ("os", "execlp"), ("os", "spawnl"), ("os", "spawnlp"),
               ("commands", "getoutput"), ("commands", "getstatusoutput"),
               ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
               ("pty", "spawn"), ("popen2", "popen2")}
RUNNER = os.path.join("plugins", "iscsi_ha", "commands.py")


def runtime_sources():
    found = list(ENTRY_FILES)
    for top in ("plugins", "controller"):
        for root, _, names in os.walk(os.path.join(REPO, top)):
            found += [os.path.relpath(os.path.join(root, name), REPO) for name in names
                      if name.endswith(".py")]
    return sorted(set(found))


def parsed(relative):
    with io.open(os.path.join(REPO, relative), encoding="utf-8") as handle:
        return ast.parse(handle.read(), relative)


def _dotted(node):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


@pytest.mark.parametrize("relative", runtime_sources())
def test_no_source_starts_a_shell_or_a_process_outside_the_runner(relative):
    tree = parsed(relative)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            assert not any(k.arg == "shell" for k in node.keywords), \
                "%s:%d passes shell=" % (relative, node.lineno)
            assert _dotted(node.func) not in SHELL_CALLS, \
                "%s:%d calls %s.%s" % ((relative, node.lineno) + _dotted(node.func))
        if relative != RUNNER and isinstance(node, (ast.Import, ast.ImportFrom)):
            # (iscsi_ha's own ``commands`` is the runner: only top-level modules count.)
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if not node.level else [])
            assert not any(n.split(".")[0] in ("subprocess", "commands", "pty", "popen2")
                           for n in names), \
                "%s:%d imports a process module: start processes through iscsi_ha.commands" \
                % (relative, node.lineno)


def test_the_runner_takes_argv_lists_only(tmp_path):
    marker = tmp_path / "made-by-a-shell"
    for command in ("touch %s" % marker, u"touch %s" % marker):
        with pytest.raises(TypeError):
            commands.run(command)
        with pytest.raises(TypeError):
            commands.spawn_detached(command)
    assert not marker.exists()


def test_shell_syntax_in_an_argument_is_one_literal_argument(tmp_path):
    marker = tmp_path / "made-by-a-shell"
    hostile = "$(touch %s); `touch %s` | touch %s && touch %s\n" % ((marker,) * 4)
    result = commands.run(["printf", "%s", hostile])
    assert result.stdout == hostile
    assert not marker.exists()


def test_the_runner_asks_popen_for_no_shell(monkeypatch):
    seen = []
    real = commands.subprocess.Popen

    def recording(argv, **options):
        seen.append((argv, options.get("shell", False)))
        return real(argv, **options)
    monkeypatch.setattr(commands.subprocess, "Popen", recording)
    commands.run(["true"])
    commands.spawn_detached(["true"])
    assert seen == [(["true"], False), (["true"], False)]
