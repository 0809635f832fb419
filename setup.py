"""Installs iscsi-ha on a dom0: the XAPI plugin, the controller, their libraries, the templates.

    python setup.py install

(not ``pip install .``: a wheel would put the plugin under site-packages, where
xapi does not look.) The RPM (``make rpm``, templates/iscsi-ha.spec) runs this same
install into its build root, so this file is the one place for what lands where:

- the plugin: /etc/xapi.d/plugins/iscsi-ha;
- DRBD's fence-peer handler: /usr/libexec/iscsi-ha/iscsi-ha-fence-peer;
- the controller daemon: /usr/sbin/iscsi-ha-controller, and its systemd unit,
  /usr/lib/systemd/system/iscsi-ha-controller.service (a package's place: a copy or
  drop-in in /etc/systemd/system overrides it), rendered at install time from
  templates/iscsi-ha-controller.service.j2 to run the daemon with this Python;
- the CLI: /usr/sbin/iscsi-ha. An administrator's command like drbdadm and tgtadm: it
  needs root (the config's XAPI password file, xapi's local root login), and root's
  PATH has /usr/sbin;
- the xe helpers: /usr/sbin/iscsi-ha-status and /usr/sbin/iscsi-ha-move;
- the sample config, /etc/iscsi-ha/iscsi-ha.conf, only where there is no config yet:
  an install never overwrites one;
- log rotation for /var/log/iscsi-ha*.log: /etc/logrotate.d/iscsi-ha;
- the libraries iscsi_ha and iscsi_ha_controller, and the templates in
  share/iscsi-ha/templates.

Each script's first line points at the Python that ran the install, or at
``build --executable PATH`` (as the RPM does: the dom0's /usr/bin/python or
/usr/bin/python3), so the same source serves 2.7 and 3.x dom0s. Installing needs
jinja2 (a runtime dependency anyway) to render the unit and the sample config. It does
not enable the unit: run
``systemctl daemon-reload && systemctl enable --now iscsi-ha-controller``.
"""

import io
import os
import re
import sys

from setuptools import setup
# After setuptools, so that Pythons without distutils get setuptools' copy.
from distutils.command.install_data import install_data  # pylint: disable=wrong-import-order

HERE = os.path.dirname(os.path.abspath(__file__))
CONTROLLER = "/usr/sbin/iscsi-ha-controller"
UNIT_TEMPLATE = "iscsi-ha-controller.service.j2"
UNIT_DIR = "/usr/lib/systemd/system"
CONFIG = "/etc/iscsi-ha/iscsi-ha.conf"
LOGROTATE = ("/etc/logrotate.d/iscsi-ha", "templates/iscsi-ha.logrotate")
# (installed directory, source file) of each script whose first line names this Python.
SCRIPTS = [
    ("/etc/xapi.d/plugins", "plugins/iscsi-ha"),
    # Named by the DRBD resource files (iscsi_ha.drbdconf.FENCE_PEER).
    ("/usr/libexec/iscsi-ha", "plugins/iscsi-ha-fence-peer"),
    (os.path.dirname(CONTROLLER), "controller/" + os.path.basename(CONTROLLER)),
    ("/usr/sbin", "controller/iscsi-ha"),
]
# Shell scripts, installed as they are.
XE_HELPERS = ("/usr/sbin", ["xe-helpers/iscsi-ha-status", "xe-helpers/iscsi-ha-move"])


def read_version():
    with open(os.path.join(HERE, "plugins", "iscsi_ha", "__init__.py")) as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


class InstallData(install_data):
    """Renders the systemd unit and the sample config, copies the data files, then points
    the scripts' first lines at the Python they will run on."""

    def run(self):
        python = self.get_finalized_command("build").executable
        self.data_files.append((UNIT_DIR, [self._render_unit(python)]))
        self.data_files.append((os.path.dirname(LOGROTATE[0]),
                                [self._built(os.path.basename(LOGROTATE[0]),
                                             _read(LOGROTATE[1]))]))
        existing = self._on_this_root(CONFIG)
        if os.path.exists(existing):
            self.announce("keeping %s: an install never overwrites a config" % existing, 2)
        else:
            self.data_files.append((os.path.dirname(CONFIG), [self._render_sample()]))
        install_data.run(self)
        scripts = set(os.path.join(directory, os.path.basename(source))
                      for directory, source in SCRIPTS)
        for path in self.get_outputs():
            if self._installed_as(path) in scripts:
                with open(path) as handle:
                    lines = handle.readlines()
                lines[0] = "#!%s\n" % python
                with open(path, "w") as handle:
                    handle.writelines(lines)
                os.chmod(path, 0o755)

    def _on_this_root(self, path):
        """Where the installed system's ``path`` is written (under --root if given)."""
        return os.path.join(self.root, path.lstrip(os.sep)) if self.root else path

    def _installed_as(self, path):
        """Where ``path`` is on the installed system (without --root)."""
        if self.root and path.startswith(self.root):
            path = path[len(self.root.rstrip(os.sep)):]
        return path

    def _render_unit(self, python):
        jinja2 = _jinja2()
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        text = environment.get_template(UNIT_TEMPLATE).render(python=python,
                                                              controller=CONTROLLER)
        return self._built(UNIT_TEMPLATE[:-len(".j2")], text)

    def _render_sample(self):
        """The sample ``python -m iscsi_ha.config sample`` prints, from this source tree."""
        _jinja2()
        sys.path.insert(0, os.path.join(HERE, "plugins"))
        from iscsi_ha import config  # pylint: disable=import-outside-toplevel
        return self._built(os.path.basename(CONFIG), config.render_sample())

    def _built(self, name, text):
        """``text`` written as build/iscsi-ha/``name``, for install_data to copy."""
        build = os.path.join(self.get_finalized_command("build").build_base, "iscsi-ha")
        if not os.path.isdir(build):
            os.makedirs(build)
        path = os.path.join(build, name)
        with io.open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path


def _jinja2():
    try:
        import jinja2  # pylint: disable=import-outside-toplevel
    except ImportError:
        sys.exit("iscsi-ha: installing needs jinja2 to render the systemd unit and the "
                 "sample config; install jinja2 first")
    return jinja2


def _read(source):
    with io.open(os.path.join(HERE, source), encoding="utf-8") as handle:
        return handle.read()


setup(
    name="iscsi-ha",
    version=read_version(),
    description="Highly available iSCSI storage for two-host XenServer / XCP-ng pools",
    package_dir={"": "plugins", "iscsi_ha_controller": "controller/iscsi_ha_controller"},
    packages=["iscsi_ha", "iscsi_ha_controller"],
    data_files=[(directory, [source]) for directory, source in SCRIPTS] + [XE_HELPERS] + [
        ("share/iscsi-ha/templates", ["templates/iscsi-ha.conf.j2",
                                      "templates/drbd-resource.res.j2",
                                      # iscsi-ha setup's tgtd drop-in, multipath blacklist
                                      "templates/tgtd-iscsi-ha.conf.j2",
                                      "templates/multipath-iscsi-ha.conf.j2",
                                      "templates/" + UNIT_TEMPLATE]),
    ],
    install_requires=["jinja2", "six"],
    cmdclass={"install_data": InstallData},
    python_requires=">=2.7",
)
