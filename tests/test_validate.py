"""The shared value rules: the canonical value back, or a message that says the fix."""

import pytest
import six

from iscsi_ha import validate


def refusal(rule, *arguments):
    with pytest.raises(ValueError) as caught:
        rule(*arguments)
    return six.text_type(caught.value)


@pytest.mark.parametrize("text", ["192.0.2.10", "0.0.0.0", "255.255.255.255", "10.0.0.1"])
def test_dotted_quads_are_ipv4_addresses(text):
    assert validate.ipv4(text) == text


@pytest.mark.parametrize("text", [
    "192.0.2.010",     # inet_aton would read 010 as octal 8
    "192.0.2.256", "192.0.2", "192.0.2.1.5", "192.0.2.1 extra", "192.0.2.1\n", " 192.0.2.1",
    "0x7f.0.0.1", "192.0.2.-1", "", "192.0.2.1/24", None,
])
def test_anything_else_is_refused_with_the_form_to_use(text):
    message = refusal(validate.ipv4, text)
    assert message.startswith("'%s' must be an IPv4 address" % (text,))
    assert "without leading zeros, such as 192.0.2.10" in message


def test_an_address_with_prefix_comes_back_split():
    assert validate.ipv4_with_prefix("192.0.2.100/24") == ("192.0.2.100", 24)
    assert validate.ipv4_with_prefix("192.0.2.100/32") == ("192.0.2.100", 32)


@pytest.mark.parametrize("text", ["192.0.2.100", "192.0.2.100/0", "192.0.2.100/33",
                                  "192.0.2.100/024", "192.0.2.010/24", "192.0.2.100/24 x"])
def test_a_bad_address_with_prefix_is_refused(text):
    assert refusal(validate.ipv4_with_prefix, text).startswith(
        "'%s' must be an IPv4 address with prefix length, such as 192.0.2.100/24" % text)


def test_a_network_must_have_its_host_bits_zero():
    assert validate.ipv4_network("198.51.100.0/24") == "198.51.100.0/24"
    assert validate.ipv4_network("192.0.2.128/25") == "192.0.2.128/25"
    assert validate.ipv4_network("192.0.2.7/32") == "192.0.2.7/32"
    assert refusal(validate.ipv4_network, "192.0.2.1/24") == (
        "'192.0.2.1/24' has host bits set; write the network as 192.0.2.0/24")
    assert refusal(validate.ipv4_network, "192.0.2.0").startswith(
        "'192.0.2.0' must be an IPv4 network such as 192.0.2.0/24")


def test_initiators_are_all_alone_or_addresses_and_networks():
    assert validate.initiators("ALL") == ["ALL"]
    assert validate.initiators("192.0.2.11  198.51.100.0/24") == [
        "192.0.2.11", "198.51.100.0/24"]
    assert "ALL already allows every initiator" in refusal(
        validate.initiators, "ALL 192.0.2.11")
    assert "'192.0.2.11' is listed twice" in refusal(
        validate.initiators, "192.0.2.11 192.0.2.11")
    assert refusal(validate.initiators, "").startswith("'' must be ALL or")


@pytest.mark.parametrize("text, bad", [
    ("192.0.2.11 all", "'all' must be an IPv4 address"),
    ("192.0.2.11 192.0.2.012", "'192.0.2.012' must be an IPv4 address"),
    ("192.0.2.11,192.0.2.12", "'192.0.2.11,192.0.2.12' must be an IPv4 address"),
    ("198.51.100.1/24", "'198.51.100.1/24' has host bits set"),
    ("iqn.2026-01.com.example:host", "'iqn.2026-01.com.example:host' must be an IPv4"),
])
def test_a_bad_initiator_is_named(text, bad):
    message = refusal(validate.initiators, text)
    assert message.startswith(bad)
    assert "separate addresses and networks with spaces, or write ALL alone" in message


def test_whole_numbers_in_range():
    assert validate.whole_number("7", 1, 10) == 7
    assert validate.whole_number(10, 1, 10) == 10
    for value in ("0", "11", "-1", "+5", " 5", "5 ", "1_0", "5.0", "x", u"\u00b2", "",
                  True, None, 5.0):
        assert refusal(validate.whole_number, value, 1, 10) == (
            "'%s' must be a whole number from 1 to 10" % (value,))


def test_seconds_are_finite_and_positive():
    assert validate.seconds("10") == 10.0
    assert validate.seconds("2.5") == 2.5
    assert validate.seconds(".5") == 0.5
    assert validate.seconds(3) == 3.0
    for value in ("inf", "-inf", "nan", "1e999", "Infinity", "0", "0.0", "-1", "1e-999",
                  "ten", "", " 1", "1_0", float("inf"), float("nan"), 10 ** 400, "86401"):
        assert refusal(validate.seconds, value).startswith(
            "'%s' must be a number of seconds above 0 and at most 86400" % (value,))


def test_scsi_ids_are_hex_digits_and_other_identity_values_fit_their_fields():
    assert validate.scsi_identity("scsi_id", "1fa0C0DE") == "1fa0C0DE"
    assert validate.scsi_identity("scsi_sn", "S" * 36) == "S" * 36
    assert validate.scsi_identity("vendor_id", "ISCSIHA!") == "ISCSIHA!"
    assert validate.scsi_identity("product_id", "P" * 16) == "P" * 16
    for value in ("", "f" * 32, "vol-1", "12 34"):
        assert refusal(validate.scsi_identity, "scsi_id", value) == (
            "'%s' must be 1 to 31 hexadecimal digits (it becomes the LUN's NAA "
            "identifier)" % value)
    for key, limit in (("scsi_sn", 36), ("vendor_id", 8), ("product_id", 16)):
        for value in ("", "X" * (limit + 1), "a b", "a,b", "a=b", u"caf\u00e9", "a\tb"):
            assert refusal(validate.scsi_identity, key, value) == (
                "'%s' must be 1 to %d printable ASCII characters without spaces, commas "
                "or =" % (value, limit))


def test_interface_names_follow_the_kernels_rules():
    for name in ("xenbr0", "bond1.100", "eth-storage", "x" * 15):
        assert validate.interface(name) == name
    for name in ("", "x" * 16, "has space", "a/b", "eth0:1", ".", ".."):
        assert refusal(validate.interface, name).startswith(
            "'%s' is not a network interface name (at most 15 characters" % name)


def test_on_off():
    assert validate.on_off("on") is True
    assert validate.on_off("off") is False
    assert refusal(validate.on_off, "yes") == "'yes' must be on or off"


@pytest.mark.parametrize("url", ["https://192.0.2.1", "http://xcp-a.example.com:80/",
                                 "https://192.0.2.1:443"])
def test_http_urls(url):
    assert validate.http_url(url) == url


@pytest.mark.parametrize("url, complaint", [
    ("ftp://192.0.2.1", "must be an http or https URL"),
    ("192.0.2.1", "must be an http or https URL"),
    ("https://", "must name a host"),
    ("https://192.0.2.1:0", "must name a host and optionally a port from 1 to 65535"),
    ("https://192.0.2.1:http", "must name a host"),
    ("https://192.0.2.300", "the host 192.0.2.300 is not an IPv4 address"),
    ("https://root:secret@192.0.2.1", "holds credentials; remove them from the URL"),
    ("https://[192.0.2.1", "must be an http or https URL"),
    ("https://192.0.2.1/a b", "without spaces"),
])
def test_bad_urls_say_what_to_write(url, complaint):
    message = refusal(validate.http_url, url)
    assert message.startswith("'%s'" % url)
    assert complaint in message
