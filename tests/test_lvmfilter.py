"""The LVM filter check: which devices a dom0's lvm.conf lets LVM scan."""

import pytest

from iscsi_ha import lvmfilter

GOOD = """
devices {
    # keep LVM off the DRBD devices and their backing disks
    global_filter = [ "r|^/dev/drbd[0-9]+$|", "r|^/dev/sdb$|", "a|.*|" ]
}
"""


def test_a_filter_that_rejects_drbd_and_its_disk():
    assert not lvmfilter.scanned(GOOD, "/dev/drbd1")
    assert not lvmfilter.scanned(GOOD, "/dev/sdb")
    assert lvmfilter.scanned(GOOD, "/dev/sdc")


def test_without_a_filter_everything_is_scanned():
    assert lvmfilter.scanned("devices {\n}\n", "/dev/drbd1")


def test_the_first_matching_pattern_decides():
    text = 'devices {\n filter = [ "a|/dev/drbd1|", "r|/dev/drbd.*|" ]\n}\n'
    assert lvmfilter.scanned(text, "/dev/drbd1")
    assert not lvmfilter.scanned(text, "/dev/drbd2")


def test_both_lists_must_accept_and_comments_do_not_count():
    text = ('devices {\n # global_filter = [ "a|.*|" ]\n global_filter = [ "a|.*|" ]\n'
            ' filter = [ "r|drbd|" ]\n}\n')
    assert not lvmfilter.scanned(text, "/dev/drbd0")


def test_any_delimiter_and_multiline_lists():
    text = 'devices {\n global_filter = [\n  "r#^/dev/drbd#",\n  "a/.*/"\n ]\n}\n'
    assert not lvmfilter.scanned(text, "/dev/drbd0")
    assert lvmfilter.scanned(text, "/dev/sda")


@pytest.mark.parametrize("pattern", ["x|a|", "a|unterminated", "r"])
def test_malformed_patterns_are_reported(pattern):
    with pytest.raises(ValueError):
        lvmfilter.scanned('devices {\n filter = [ "%s" ]\n}\n' % pattern, "/dev/sda")
