"""``iscsi-ha setup`` and ``iscsi-ha config backup|restore`` in the lab, run on a host as a
sysadmin runs them: every host's files go through its own plugin into its ``[host]
install_root`` (the lab host's directory, not /etc)."""

import json
import os

from tests.test_drbdconf import parse as drbdadm_dump

FILES = ["etc/drbd.d/iscsi1.res", "etc/systemd/system/tgtd.service.d/iscsi-ha.conf",
         "etc/multipath/conf.d/iscsi-ha.conf",
         "usr/lib/systemd/system/iscsi-ha-controller.service"]


def cli_json(lab, host, *args):
    code, out, err = lab.cli(host, *(list(args) + ["--json"]))
    return code, json.loads(out), err


def installed(lab, host):
    root = os.path.join(lab.state, "hosts", host, "root")
    return dict((path, open(os.path.join(root, path)).read()) for path in FILES
                if os.path.exists(os.path.join(root, path)))


def outcomes(result, host):
    """(path under the host's install root, outcome) of each of ``host``'s files."""
    entry = [h for h in result["hosts"] if h["host"] == host][0]
    return [(f["path"].split("/root/", 1)[1], f["outcome"]) for f in entry["files"]]


def test_setup_shows_then_installs_every_hosts_files_and_the_config_backup_round_trips(
        lab, tmp_path):
    # A dry run shows both hosts' files as diffs and writes nothing.
    code, shown, err = cli_json(lab, "hostB", "setup", "--dry-run")
    assert code == 0, err
    assert [h["host"] for h in shown["hosts"]] == ["hostA", "hostB"]
    for host in ("hostA", "hostB"):
        assert outcomes(shown, host) == [(path, "would create") for path in FILES]
        entry = [h for h in shown["hosts"] if h["host"] == host][0]
        assert all(f["diff"].startswith("--- /dev/null\n") for f in entry["files"])
        assert entry["lvm_filter"]["ok"] is True
        assert installed(lab, host) == {}
    code, text, _ = lab.cli("hostB", "setup", "--dry-run")
    assert code == 0
    assert "dry run: nothing was changed" in text
    assert '\n+        fence-peer "/usr/libexec/iscsi-ha/iscsi-ha-fence-peer";\n' in text

    code, done, err = cli_json(lab, "hostB", "setup")
    assert code == 0, err
    assert done["changed"] is True
    for host in ("hostA", "hostB"):
        assert outcomes(done, host) == [(path, "created") for path in FILES]
        files = installed(lab, host)
        assert sorted(files) == sorted(FILES)
        # Each host's file is its own config's: its disk under DRBD.
        assert "/drbd/%s/disk/iscsi1" % host in files[FILES[0]]
        result = drbdadm_dump(str(tmp_path), files[FILES[0]], "9", host, resource="iscsi1")
        assert result.returncode == 0, result.stderr

    # Again, from the other host: nothing to do.
    code, text, err = lab.cli("hostA", "setup")
    assert code == 0, err
    rows = [line.split() for line in text.splitlines() if line.startswith("host")][1:]
    assert [(row[0], row[-1]) for row in rows] == [
        (host, outcome) for host in ("hostA", "hostB")
        for outcome in ["unchanged"] * len(FILES)] + [("hostA", "ok"), ("hostB", "ok")]
    assert "nothing changed: every file is in place on every host" in text

    # The config backup: taken from hostA, which both hosts' pool-wide settings match.
    code, shown, err = cli_json(lab, "hostA", "status")
    assert shown["config_backup"] is None
    code, stored, err = cli_json(lab, "hostA", "config", "backup")
    assert code == 0, err
    assert stored["backup"]["host"] == "hostA"
    code, shown, err = cli_json(lab, "hostB", "status")
    assert shown["config_backup"]["matches"] == {"hostA": True, "hostB": True}
    code, text, _ = lab.cli("hostB", "status")
    assert "config backup: taken " in text and "from hostA" in text
    assert "every host matches" in text

    # hostA's config is lost a line; restore brings the backup's text back through
    # its plugin, keeping the file it replaced.
    config_path = lab.record()["hosts"]["hostA"]["config"]
    original = open(config_path).read()
    with open(config_path, "w") as handle:
        handle.write(original.replace("arp_announcements = 3\n", ""))
    code, preview, err = cli_json(lab, "hostB", "config", "restore", "hostA", "--dry-run")
    assert code == 0, err
    assert preview["restore"]["outcome"] == "would change"
    assert "+arp_announcements = 3\n" in preview["restore"]["diff"]
    code, restored, err = cli_json(lab, "hostB", "config", "restore", "hostA")
    assert code == 0, err
    assert restored["restore"]["outcome"] == "changed"
    assert open(config_path).read() == original
    assert "arp_announcements" not in open(restored["restore"]["replaced_kept_at"]).read()
    code, shown, err = cli_json(lab, "hostA", "status")
    assert code == 0, err
    assert shown["config_backup"]["matches"] == {"hostA": True, "hostB": True}
