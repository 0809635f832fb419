"""DRBD resource files: what the real drbd-utils parsers read back, and what is refused.

``drbdadm -c FILE dump RES`` parses a file without a DRBD kernel module, but
only for a resource with an ``on <this hostname>`` section, so each parse runs
in a private UTS namespace under the host's name (root and unshare needed).
"""

import io
import os
import shutil
import sys
import tempfile

import pytest

from iscsi_ha import commands, config, drbdconf
from iscsi_ha.errors import BadArgument, BadConfig

PARSERS = {"9": "drbdadm", "8.4": "/usr/lib/drbd/drbdadm-84"}
HOSTS = [("xcp-a", "198.51.100.1"), ("xcp-b", "198.51.100.2")]
EXAMPLE = {"resource": "r0", "minor": 1, "disk": "/dev/sdb", "hosts": HOSTS, "port": 7789}
HANDLER = "/usr/libexec/iscsi-ha/iscsi-ha-fence-peer"  # drbdadm dump prints a plain word unquoted
PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "plugins")


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="iha-drbdconf-")
    yield path
    shutil.rmtree(path)


def example(version, **overrides):
    arguments = dict(EXAMPLE, version=version)
    arguments.update(overrides)
    return drbdconf.render(**arguments)


def parse(workdir, text, version, hostname="xcp-a", resource="r0"):
    """Run DRBD ``version``'s drbdadm on ``text`` as host ``hostname``; its Result."""
    tool = commands.find_tool(PARSERS[version])
    if tool is None or commands.find_tool("unshare") is None:
        pytest.fail("%s or unshare is missing: install drbd-utils and util-linux "
                    "(tests/install-deps.sh)" % PARSERS[version])
    path = os.path.join(workdir, "resource.res")
    with io.open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return commands.run(
        ["unshare", "--uts", "sh", "-c", 'hostname "$1" && exec "$2" -c "$3" dump "$4"',
         "sh", hostname, tool, path, resource], timeout=10, check=False)


def sections(dump):
    """``drbdadm dump`` output as nested dicts: ``{"resource r0": {"net": {...}}}``."""
    root = {}
    stack = [root]
    for line in dump.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            child = {}
            stack[-1][line[:-1].strip()] = child
            stack.append(child)
        elif line == "}":
            stack.pop()
        else:
            key, _, value = line.rstrip(";").partition(" ")
            stack[-1][key] = " ".join(value.split())
    return root


@pytest.mark.parametrize("version", ["9", "8.4"])
@pytest.mark.parametrize("hostname", ["xcp-a", "xcp-b"])
def test_both_hosts_read_back_the_safety_settings(workdir, version, hostname):
    result = parse(workdir, example(version), version, hostname)
    assert result.returncode == 0, result.stderr
    resource = sections(result.stdout)["resource r0"]
    net = resource["net"]
    assert net["protocol"] == "C"
    assert net["allow-two-primaries"] == "no"
    assert (net["after-sb-0pri"], net["after-sb-1pri"], net["after-sb-2pri"]) == (
        "discard-zero-changes", "consensus", "disconnect")
    assert net["rr-conflict"] == "disconnect"
    fencing_section = "net" if version == "9" else "disk"
    assert resource[fencing_section]["fencing"] == "resource-only"
    assert resource["handlers"]["fence-peer"] == HANDLER
    for name, address in HOSTS:
        host = resource["on " + name]
        assert host["address"] == "ipv4 %s:7789" % address
        assert host["volume 0"] == {"device": "/dev/drbd1 minor 1", "disk": "/dev/sdb",
                                    "meta-disk": "internal"}


def test_drbd9_gets_node_ids_a_mesh_and_no_auto_promotion(workdir):
    result = parse(workdir, example("9"), "9")
    assert result.returncode == 0, result.stderr
    resource = sections(result.stdout)["resource r0"]
    assert [resource["on " + name]["node-id"] for name, _ in HOSTS] == ["0", "1"]
    assert resource["connection-mesh"] == {"hosts": "xcp-a xcp-b"}
    assert resource["options"]["auto-promote"] == "no"


def test_each_generation_refuses_the_other_generations_file(workdir):
    for written_for, parsed_by, complaint in (("8.4", "9", "fencing"),
                                              ("9", "8.4", "auto-promote")):
        result = parse(workdir, example(written_for), parsed_by)
        assert result.returncode != 0
        assert complaint in result.stderr


@pytest.mark.parametrize("version", ["9", "8.4"])
def test_a_broken_rendering_is_refused_by_the_real_parser(workdir, version):
    broken = example(version).replace("protocol C;", "protocol Q;")
    assert "protocol Q;" in broken
    result = parse(workdir, broken, version)
    assert result.returncode != 0
    assert "'Q'" in result.stderr and "protocol" in result.stderr


def test_a_disk_path_with_colons_survives_quoting(workdir):
    disk = "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"
    result = parse(workdir, example("9", disk=disk), "9")
    assert result.returncode == 0, result.stderr
    volume = sections(result.stdout)["resource r0"]["on xcp-a"]["volume 0"]
    assert volume["disk"] == '"%s"' % disk


def generations_accepting(workdir, name):
    """The DRBD generations whose drbdadm reads the example file renamed to ``name``."""
    accepting = []
    for version in ("9", "8.4"):
        text = example(version).replace("resource r0 {", "resource %s {" % name)
        if parse(workdir, text, version, resource=name).returncode == 0:
            accepting.append(version)
    return accepting


@pytest.mark.parametrize("name, legal", [
    ("r0", True), ("iscsi_1.a-b", True), ("Store-2", True),
    ("r+0", False), ("a:b", False), ("on", False), ("protocol", False),
    ("rate", False), ("all", False), ("12", False), ("12M", False),
    ("198.51.100.9", False),
])
def test_a_resource_name_is_refused_when_either_drbd_generation_refuses_it(
        workdir, name, legal):
    try:
        drbdconf.render(**dict(EXAMPLE, resource=name))
        refused = False
    except BadArgument as exc:
        assert "resource: '%s'" % name in exc.message
        refused = True
    assert refused is not legal
    assert (generations_accepting(workdir, name) == ["9", "8.4"]) is legal


@pytest.mark.parametrize("override, problem", [
    ({"resource": "r 0"}, "resource: 'r 0' is not a DRBD name; use letters, digits"),
    ({"resource": "-r0"}, "resource: '-r0' starts with '-'"),
    ({"minor": 1048576}, "minor: '1048576' must be a whole number from 0 to 1048575"),
    ({"minor": "-1"}, "minor: '-1' must be a whole number from 0 to 1048575"),
    ({"disk": "sdb"}, "disk: 'sdb' must be the absolute path of the backing block device"),
    ({"disk": '/dev/"x"'}, "without spaces or quotes"),
    ({"hosts": HOSTS[:1]}, "must be exactly two (hostname, replication address) pairs"),
    ({"hosts": HOSTS + [("xcp-c", "198.51.100.3")]}, "must be exactly two"),
    ({"hosts": [HOSTS[0], ("xcp-b", "198.51.100.256")]},
     "hosts[1] address: '198.51.100.256' must be an IPv4 address"),
    ({"hosts": [HOSTS[0], ("xcp-b", "2001:db8::2")]},
     "hosts[1] address: '2001:db8::2' must be an IPv4 address"),
    ({"hosts": [HOSTS[0], ("xcp-b", "127.0.0.1")]}, "is not a unicast address"),
    ({"hosts": [("xcp_a", "198.51.100.1"), HOSTS[1]]},
     "hosts[0] hostname: 'xcp_a' is not a hostname; use the host's name as uname -n"),
    ({"hosts": [HOSTS[0], ("xcp-a", "198.51.100.2")]}, "both hosts are named 'xcp-a'"),
    ({"hosts": [HOSTS[0], ("xcp-b", "198.51.100.1")]},
     "both hosts have the address 198.51.100.1"),
    ({"port": 0}, "port: '0' must be a whole number from 1 to 65535"),
    ({"port": "65536"}, "port: '65536' must be a whole number from 1 to 65535"),
    ({"version": "auto"}, "version: 'auto' is not supported; use 8.4 or 9"),
    ({"fence_peer": "outdate-peer.sh"},
     "fence_peer: 'outdate-peer.sh' must be a command starting with an absolute path"),
    ({"fence_peer": '/bin/fence "peer"'}, 'without " or \\'),
])
def test_a_bad_value_is_named_with_its_fix(override, problem):
    with pytest.raises(BadArgument) as caught:
        drbdconf.render(**dict(EXAMPLE, **override))
    assert problem in caught.value.message
    assert len(caught.value.details) == 1


def test_every_problem_is_reported_at_once():
    with pytest.raises(BadArgument) as caught:
        drbdconf.render("r0", minor="x", disk="sdb", hosts=HOSTS, port=70000,
                        version="8")
    assert [problem.split(":")[0] for problem in caught.value.details] == [
        "minor", "disk", "port", "version"]
    assert caught.value.message.startswith(
        "cannot write the DRBD resource file, 4 problems: minor: 'x'")


def test_a_templates_directory_without_the_resource_template_is_named(workdir,
                                                                     monkeypatch):
    shutil.copy(os.path.join(config.templates_dir(), config.SAMPLE_TEMPLATE), workdir)
    monkeypatch.setenv(config.TEMPLATES_VARIABLE, workdir)
    with pytest.raises(BadConfig) as caught:
        example("9")
    assert caught.value.message.startswith(
        "drbd-resource.res.j2 is missing from the templates directory %s;" % workdir)


def cli(monkeypatch, *arguments):
    monkeypatch.setenv("PYTHONPATH", PLUGINS)
    return commands.run([sys.executable, "-m", "iscsi_ha.drbdconf"] + list(arguments),
                        timeout=30, check=False)


def test_command_line_prints_the_file(monkeypatch):
    result = cli(monkeypatch, "--resource", "r0", "--minor", "1", "--disk", "/dev/sdb",
                 "--host", "xcp-a=198.51.100.1", "--host", "xcp-b=198.51.100.2",
                 "--drbd-version", "8.4")
    assert result.returncode == 0, result.stderr
    assert result.stdout == example("8.4")


def test_command_line_help_shows_every_option(monkeypatch):
    result = cli(monkeypatch, "--help")
    assert result.returncode == 0
    for option in ("--resource", "--minor", "--disk", "--host HOSTNAME=ADDRESS", "--port",
                   "--drbd-version", "--fence-peer"):
        assert option in result.stdout


def test_command_line_bad_values_print_the_problems_and_no_file(monkeypatch):
    result = cli(monkeypatch, "--resource", "r0", "--minor", "x", "--disk", "/dev/sdb",
                 "--host", "xcp-a=198.51.100.1", "--host", "xcp-b=198.51.100.2")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "minor: 'x' must be a whole number from 0 to 1048575" in result.stderr


def test_command_line_host_needs_name_and_address(monkeypatch):
    result = cli(monkeypatch, "--resource", "r0", "--minor", "1", "--disk", "/dev/sdb",
                 "--host", "xcp-a", "--host", "xcp-b=198.51.100.2")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "'xcp-a': use HOSTNAME=REPLICATION_ADDRESS" in result.stderr
