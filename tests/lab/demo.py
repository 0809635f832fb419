"""The two-host demo behind ``make demo``.

Brings the lab pool up, writes a known pattern to the LUN through the floating
IP from the client namespace (where the VMs' storage traffic would come from),
then lives through a planned master change, a host failure and that host's
return. The lab changes only the pool, as an elector or a sysadmin does; each
host's iscsi-ha-controller moves the storage. After each event the demo says
what the master's controller did and why, shows both hosts' status, reads the
pattern back through the VIP, compares the LUN's SCSI identity (VPD pages 0x80
and 0x83) and says how long I/O was dark, as measured by a client reading
block 0 every 20 ms. Ends by taking the lab down.

    python -m tests.lab.demo [--json] [--drbd-version 9|8.4] [--keep]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import XenAPI

from tests.lab import controllers, pool
from tests.lab.bench import take_down

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATTERN_BLOCKS = 2048  # 1 MiB of 512-byte blocks
PROBE_LEAD_SECONDS = 0.5
# The probe stops once the event is over and I/O has settled; this only bounds it.
PROBE_LIMIT_SECONDS = 300.0
SETTLE_SECONDS = 1.0


class Demo(object):
    def __init__(self, state_dir, say):
        self.state_dir = state_dir
        self.say = say
        self.description = None

    @property
    def lab(self):
        return pool.Lab.load(self.state_dir)

    def client_argv(self, *args):
        return ["ip", "netns", "exec", self.description["client_netns"], sys.executable,
                "-m", "tests.lab.iscsi_io", self.description["lun_urls"][0]] + list(args)

    def client_io(self, *args):
        process = subprocess.run(self.client_argv(*args), cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, universal_newlines=True,
                                 timeout=120)
        if process.returncode not in (0, 1):
            raise pool.LabError("client %s failed: %s" % (args[0], process.stderr.strip()))
        return json.loads(process.stdout)

    def identity(self):
        return [self.client_io("vpd", "--page", page)["hex"] for page in ("0x80", "0x83")]

    def status_tables(self):
        lab = self.lab
        with lab.xapi() as session:
            for name, host in sorted(lab.hosts.items()):
                if not host["alive"]:
                    self.say("host %s: DOWN\n" % name)
                    continue
                ref = session.xenapi.host.get_by_uuid(host["uuid"])
                table = session.xenapi.host.call_plugin(ref, "iscsi-ha", "status",
                                                        {"format": "table"})
                self.say("[%s] %s" % (name, table))

    def controller_pass(self, outcome, since):
        """What the master's controller did during the event: the pass the lab waited for,
        or else the last one it started since ``since`` (None: it made none)."""
        if "controller" in outcome:
            return outcome["controller"]
        last = (controllers.state(self.lab, outcome["master"]) or {}).get("last_pass")
        if last and last["started"] >= since:
            return dict((key, last[key]) for key in ("reason", "outcome", "trigger",
                                                     "actions"))
        return None

    def show_controller(self, master, done):
        if done is None:
            self.say("the controller on %s made no pass meanwhile\n" % master)
            return
        self.say("the controller on %s (%s): %s: %s\n" % (master, done["trigger"],
                                                           done["outcome"], done["reason"]))
        for action in done["actions"]:
            self.say("  %s on %s: %s in %.2f s: %s\n" % (
                action["fn"], action["host"], "ok" if action["ok"] else "FAILED",
                action["seconds"], action.get("summary") or " ".join(action.get("error", []))))

    def through_event(self, title, action, identity):
        """Run ``action`` while a client probes the LUN; check data and identity after."""
        self.say("\n== %s ==\n" % title)
        probe = subprocess.Popen(self.client_argv("probe", "--duration",
                                                  str(PROBE_LIMIT_SECONDS), "--interval", "0.02"),
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True)
        try:
            time.sleep(PROBE_LEAD_SECONDS)
            started = time.time()
            outcome = action()
            seconds = time.time() - started
            done = self.controller_pass(outcome, started)
            time.sleep(SETTLE_SECONDS)
            probe.send_signal(signal.SIGTERM)  # it reports what it saw and exits
            output, errors = probe.communicate(timeout=30)
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
        probe_report = json.loads(output) if output.strip() else {"error": errors.strip()}
        self.show_controller(outcome["master"], done)
        self.status_tables()
        verified = self.client_io("verify", "--seed", "demo", "--blocks", str(PATTERN_BLOCKS))
        same_identity = self.identity() == identity
        dark = probe_report.get("longest_gap_seconds")
        serving = outcome.get("serving_seconds")
        self.say("master is now %s%s; the event took %.2f s\n" % (
            outcome["master"], "" if serving is None else
            ", serving %.2f s after the master changed" % serving, seconds))
        self.say("pattern read back through the VIP: %s\n" % (
            "MATCHES" if verified["ok"] else "DIFFERS in %d blocks"
            % verified["mismatched_count"]))
        self.say("SCSI identity (VPD 0x80, 0x83): %s\n" % ("unchanged" if same_identity
                                                            else "CHANGED"))
        self.say("I/O was dark for %s\n" % ("%.2f s" % dark if dark is not None
                                           else "an unknown time (%s)" % probe_report))
        return {"event": title, "master": outcome["master"], "event_seconds": round(seconds, 3),
                "serving_seconds": serving, "pattern_ok": verified["ok"],
                "identity_unchanged": same_identity, "dark_seconds": dark,
                "controller": done}

    def run(self, drbd_version):
        self.say("Bringing up the two-host lab pool (DRBD %s) in %s\n"
                 % (drbd_version, self.state_dir))
        self.description = pool.up(self.state_dir, drbd_version)
        self.say("hostA is pool master; its controller made it serve %s on VIP %s\n"
                 % (self.description["lun_urls"][0], self.description["vip"]))
        self.status_tables()
        written = self.client_io("write", "--seed", "demo", "--blocks", str(PATTERN_BLOCKS))
        self.say("client wrote a %d-block pattern through the VIP\n" % written["blocks"])
        identity = self.identity()
        events = [
            self.through_event("Planned master change: hostA -> hostB",
                               lambda: pool.designate_master(self.state_dir, "hostB"),
                               identity),
            self.through_event("Host failure: hostB dies, the elector makes hostA master",
                               lambda: pool.fail_host(self.state_dir, "hostB"), identity),
            self.through_event("hostB comes back as a slave and resyncs",
                               lambda: pool.restore_host(self.state_dir, "hostB"), identity),
        ]
        return {"drbd_version": drbd_version, "pattern_blocks": PATTERN_BLOCKS,
                "events": events,
                "ok": all(e["pattern_ok"] and e["identity_unchanged"] for e in events)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.lab.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true",
                        help="print only a JSON summary (for scripts)")
    parser.add_argument("--drbd-version", choices=["9", "8.4"], default="9")
    parser.add_argument("--keep", action="store_true",
                        help="leave the lab up (take it down with python -m tests.lab down)")
    options = parser.parse_args(argv)
    say = (lambda text: None) if options.json else sys.stdout.write
    state_dir = tempfile.mkdtemp(prefix="iscsi-ha-demo-")
    demo = Demo(state_dir, say)
    taken_down = True
    try:
        summary = demo.run(options.drbd_version)
    except (pool.LabError, XenAPI.Failure) as exc:
        summary = {"ok": False, "error": str(exc)}
        say("demo failed: %s\n" % exc)
    finally:
        say("\n")
        if options.keep:
            say("lab left up: python -m tests.lab down --state %s\n" % state_dir)
        else:
            taken_down = take_down(state_dir, say)
    summary["ok"] = summary["ok"] and taken_down
    if options.json:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write("\ndemo %s\n" % ("PASSED: no data lost, LUN identity kept"
                                          if summary["ok"] else "FAILED"))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
