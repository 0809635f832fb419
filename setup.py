"""Installs iscsi-ha on a dom0: the XAPI plugin, its library and the templates.

    python setup.py install

(not ``pip install .``: a wheel would put the plugin under site-packages, where
xapi does not look.)

The plugin lands in /etc/xapi.d/plugins/iscsi-ha and DRBD's fence-peer handler in
/usr/libexec/iscsi-ha/iscsi-ha-fence-peer, each with its first line pointing at the
Python that ran the install, so the same source serves 2.7 and 3.x dom0s.
"""

import os
import re
import sys

from setuptools import setup
# After setuptools, so that Pythons without distutils get setuptools' copy.
from distutils.command.install_data import install_data  # pylint: disable=wrong-import-order

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = "plugins/iscsi-ha"
FENCE_PEER = "plugins/iscsi-ha-fence-peer"


def read_version():
    with open(os.path.join(HERE, "plugins", "iscsi_ha", "__init__.py")) as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


class InstallData(install_data):
    """Copies data files, then points the scripts' first lines at this Python."""

    def run(self):
        install_data.run(self)
        scripts = [os.path.basename(PLUGIN), os.path.basename(FENCE_PEER)]
        for path in self.get_outputs():
            if os.path.basename(path) in scripts:
                with open(path) as handle:
                    lines = handle.readlines()
                lines[0] = "#!%s\n" % sys.executable
                with open(path, "w") as handle:
                    handle.writelines(lines)
                os.chmod(path, 0o755)


setup(
    name="iscsi-ha",
    version=read_version(),
    description="Highly available iSCSI storage for two-host XenServer / XCP-ng pools",
    package_dir={"": "plugins"},
    packages=["iscsi_ha"],
    data_files=[
        ("/etc/xapi.d/plugins", [PLUGIN]),
        # Named by the DRBD resource files (iscsi_ha.drbdconf.FENCE_PEER).
        ("/usr/libexec/iscsi-ha", [FENCE_PEER]),
        ("share/iscsi-ha/templates", ["templates/iscsi-ha.conf.j2",
                                      "templates/drbd-resource.res.j2"]),
    ],
    install_requires=["jinja2", "six"],
    cmdclass={"install_data": InstallData},
    python_requires=">=2.7",
)
