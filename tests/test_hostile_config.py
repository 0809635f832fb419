# -*- coding: utf-8 -*-
"""Hostile config files through config.load: keys missing or set twice, sections twice,
values of the wrong kind, bad addresses and IQNs, garbage lines, non-UTF-8 bytes.

load either returns a Config whose values are what the README promises, or raises
ISCSI_HA_BAD_CONFIG naming the file and each problem; never anything else.
"""

import io
import os
import re
import shutil
import tempfile

import six
from hypothesis import given, settings, strategies as st

from iscsi_ha import config as config_module
from iscsi_ha.errors import BadConfig
from tests.support import hostile

SAMPLE = None
REQUIRED = {("target", "iqn"), ("vip", "address"), ("vip", "interface"),
            ("replication", "interface"), ("resource iscsi1", "device"),
            ("resource iscsi1", "lun"), ("resource iscsi1", "scsi_id"),
            ("resource iscsi1", "scsi_sn")}
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_VIP = re.compile(r"^%s(\.%s){3}/([1-9]|[12][0-9]|3[0-2])\Z" % (_OCTET, _OCTET))
_IQN = re.compile(r"^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9][a-z0-9.-]*(:\S+)?\Z")


def sample_lines():
    global SAMPLE
    if SAMPLE is None:
        SAMPLE = config_module.render_sample().splitlines()
    return list(SAMPLE)


def key_lines(lines):
    """``[(index, section, key)]`` of the ``key = value`` lines."""
    found, section = [], None
    for index, line in enumerate(lines):
        header = re.match(r"^\[(.*)\]$", line)
        if header:
            section = header.group(1)
        elif line and line[0] not in "#;" and "=" in line:
            found.append((index, section, line.split("=", 1)[0].strip()))
    return found


def ip_like():
    octet = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["01", "-1", "", "0x1",
                                                                      u"١", " 1"]))
    prefix = st.one_of(st.integers(-1, 40).map(str), st.sampled_from(["", "24 ", "x"]))
    return st.builds(lambda a, b, c, d, p, sep: "%s.%s.%s.%s%s%s" % (a, b, c, d, sep, p),
                     octet, octet, octet, octet, prefix, st.sampled_from(["/", "", "//"]))


def iqn_like():
    return st.one_of(
        st.builds(lambda y, m, d, n: "iqn.%s-%s.%s%s" % (y, m, d, n),
                  st.sampled_from(["2026", "26", "20266", u"２０２６"]),
                  st.sampled_from(["01", "1", "13", "ab"]),
                  st.sampled_from(["com.example", "Com.Example", "-bad", "", "a b"]),
                  st.sampled_from([":ha", "", ": space", ":x\ty", ":" + "z" * 300])),
        hostile.xml_text())


def values():
    numbers = st.one_of(st.integers(-10 ** 12, 10 ** 12).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["1e3", "0x10", "1_000", "true", "", " ", "10 s"]))
    return st.one_of(hostile.xml_text(), numbers, ip_like(), iqn_like(),
                     st.sampled_from(["on", "off", "yes", "probe", "arping", "9", "8.4",
                                      "/abs/path", "relative/path", "local",
                                      "http://192.0.2.1", "ALL", "192.0.2.0/24"]))


@st.composite
def hostile_config(draw):
    """``(bytes, what was done)``: the sample with a few hostile edits."""
    lines = sample_lines()
    done = []
    for _ in range(draw(st.integers(1, 4))):
        keys = key_lines(lines)
        edit = draw(st.sampled_from(["delete", "duplicate", "value", "value", "garbage",
                                     "section-twice", "resource-twice"]))
        index, section, key = draw(st.sampled_from(keys))
        if edit == "delete":
            del lines[index]
        elif edit == "duplicate":
            lines.insert(draw(st.integers(index + 1, len(lines))), lines[index])
        elif edit == "value":
            lines[index] = u"%s = %s" % (key, draw(values()).replace("\n", " ")
                                         .replace("\r", " "))
        elif edit == "garbage":
            lines.insert(draw(st.integers(0, len(lines))), draw(hostile.xml_text()))
        elif edit == "section-twice":
            lines.append(u"[%s]" % section)
        else:
            start = lines.index(u"[resource iscsi1]")
            lines += [u"[resource iscsi2]"] + [line for line in lines[start + 1:]
                                               if "=" in line and line[0] not in "#;"]
        done.append((edit, section, key))
    text = (u"\n".join(lines) + u"\n").encode("utf-8")
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80",
                                                 b"\x80abc"])) + text[at:]
        done.append(("bytes", None, None))
    return text, done


def load(text):
    directory = tempfile.mkdtemp(prefix="iha-hostile-config-")
    try:
        path = os.path.join(directory, "iscsi-ha.conf")
        with open(path, "wb") as handle:
            handle.write(text)
        try:
            return path, config_module.load(path), None
        except BadConfig as exc:
            return path, None, exc
    finally:
        shutil.rmtree(directory)


def _values_of(decoded, section, key):
    current, found = None, []
    for line in decoded.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = " ".join(stripped[1:-1].split())
        elif current == section and "=" in stripped and stripped[0] not in "#;":
            name, _, value = stripped.partition("=")
            if name.strip() == key:
                found.append(value.strip())
    return found


@settings(max_examples=hostile.examples())
@given(hostile_config())
def test_a_hostile_config_is_a_valid_config_or_bad_config_naming_each_problem(case):
    hostile.count("hostile_config")
    text, done = case
    path, config, error = load(text)
    kinds = set(edit for edit, _, _ in done)
    if error is not None:
        assert error.code == "ISCSI_HA_BAD_CONFIG"
        assert path in error.message
        assert all(isinstance(part, six.string_types) for part in error.params())
        if "bytes" in kinds:
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                assert "is not UTF-8 text" in error.message
        return
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise AssertionError("non-UTF-8 bytes accepted")
    for edit, section, key in done:
        if edit == "duplicate":
            assert len(_values_of(decoded, section, key)) <= 1, "%s set twice" % key
    headers = [line.strip() for line in decoded.splitlines() if line.startswith("[")]
    assert len(set(headers)) == len(headers), "a section given twice was accepted"
    for place in REQUIRED:
        section, key = place
        if section.startswith("resource") and config.resources:
            continue
        assert any(_values_of(decoded, section, key)), "%s %s missing, accepted" % place
    assert _IQN.match(config.iqn)
    assert _VIP.match("%s/%d" % (config.vip_address, config.vip_prefix))
    assert isinstance(config.tid, int) and 1 <= config.tid <= 65535
    assert config.resources
    for resource in config.resources:
        assert isinstance(resource.lun, int) and 1 <= resource.lun <= 255
    luns = [r.lun for r in config.resources]
    assert len(set(luns)) == len(luns)
    config.digest()


@settings(max_examples=hostile.examples())
@given(st.sampled_from(sorted(REQUIRED)))
def test_a_missing_required_key_is_named(place):
    hostile.count("missing_config_key")
    section, key = place
    lines = sample_lines()
    header = lines.index(u"[%s]" % section)
    index = [i for i, s, k in key_lines(lines) if s == section and k == key][0]
    assert index > header
    del lines[index]
    _, config, error = load((u"\n".join(lines) + u"\n").encode("utf-8"))
    assert config is None
    assert any(detail.startswith(u"[%s] %s: missing; set it" % (section, key))
               for detail in error.details), error.details
