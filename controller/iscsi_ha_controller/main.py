"""The daemon's command line: parse, load the config, run the controller, map errors."""

import argparse
import json
import logging
import os
import signal
import sys

from iscsi_ha import config as config_module, logs
from iscsi_ha.errors import IscsiHaError
from iscsi_ha_controller import daemon, decide
from iscsi_ha_controller.observe import NotMaster, XapiLost

LOG = logging.getLogger("iscsi-ha")


def parser():
    top = argparse.ArgumentParser(
        prog="iscsi-ha-controller",
        description="Keeps the pool master serving iscsi-ha's storage: demotes every other "
                    "host, then promotes the master, through XAPI only. Runs on every host; "
                    "acts only while its host is pool master.")
    top.add_argument("--config", help="config file (default: $%s or %s)"
                     % (config_module.PATH_VARIABLE, config_module.DEFAULT_PATH))
    once = top.add_mutually_exclusive_group()
    once.add_argument("--once", action="store_true",
                      help="run one pass on the pool master and exit")
    once.add_argument("--dry-run", action="store_true",
                      help="print the plan one pass would carry out (JSON); change nothing")
    return top


def _alerter(config, controller):
    from iscsi_ha_controller import alerts
    return alerts.Alerter(config.alerts, os.path.join(config.run_dir, "alerts.json"),
                          controller.send_message)


def main(argv=None):
    options = parser().parse_args(argv)
    try:
        config = config_module.load(options.config)
    except IscsiHaError as exc:
        sys.stderr.write("iscsi-ha-controller: %s\n" % exc.message)
        return 2
    logs.configure(config.log_file)
    controller = daemon.Controller(config)
    controller.alerter = _alerter(config, controller)
    if options.once or options.dry_run:
        return _one_pass(controller, options.dry_run)
    def stop(number, frame):
        controller.stop("on %s" % ("SIGTERM" if number == signal.SIGTERM else "SIGINT"))
        if controller.idle:  # nothing under way: no need to wait for the wait to end
            raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    controller.run()
    return 0


def _one_pass(controller, dry_run):
    if not controller.connect():
        sys.stderr.write("iscsi-ha-controller: this host is not the pool master (%s); run it "
                         "on the master\n" % controller.state["mode"])
        return 1
    try:
        plan = controller.reconcile("--dry-run" if dry_run else "--once", dry_run=dry_run)
    except (NotMaster, XapiLost) as exc:
        sys.stderr.write("iscsi-ha-controller: %s\n" % exc)
        return 1
    sys.stdout.write(json.dumps(plan.as_dict(), indent=2, sort_keys=True) + "\n")
    return 3 if plan.outcome in (decide.REFUSED, decide.WAITING) else 0
