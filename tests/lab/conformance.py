"""SCSI conformance through the VIP: libiscsi's ``iscsi-test-cu`` core set, per test.

The core set is these families (Debian bookworm's libiscsi-bin 1.19.0 names them
so in ``iscsi-test-cu --list``). Every test of them runs and must pass, except:

- :data:`SLOW`, left out unless ``ISCSI_HA_CONFORMANCE=full`` (as ``make faults``
  may run it): they pass, but tgt's rdwr backing store (usr/bs_rdwr.c, 1.0.85 to
  1.0.97) writes WRITE SAME one logical block per pwrite(2), and iscsi-ha's LUNs
  are write-through (``--bsoflags sync``, O_SYNC), so each block is a synchronous
  write: 42 s, 77 s (the whole 64 MiB LUN) and 38 s in the lab.
- :data:`SKIPPED_BY_LIBISCSI`, which libiscsi itself skips with "Logical unit is
  fully provisioned": tgt reports LBPME (and accepts UNMAP, or WRITE SAME with
  the UNMAP bit) only for a LUN created with ``thin_provisioning=1``
  (usr/sbc.c), which iscsi-ha does not set. CUnit counts a skipped test as
  passed; here each must be skipped, and nothing else may be.

    python3 -m tests.lab.conformance URL [--full]    (in the client namespace)
"""

import json
import os
import re
import subprocess
import sys

FAMILIES = ("TestUnitReady", "Inquiry", "ReadCapacity10", "ReadCapacity16", "Read10",
            "Read16", "Write10", "Write16", "Verify10", "WriteSame10", "ModeSense6",
            "Mandatory")
SLOW = {
    "WriteSame10.Simple": "tgt writes WRITE SAME block by block, each O_SYNC: 42 s",
    "WriteSame10.ZeroBlocks": "the same, over the whole LUN: 77 s",
    "WriteSame10.Check": "the same: 38 s",
}
_THIN = "tgt reports no logical block provisioning (LBPME) without thin_provisioning=1"
SKIPPED_BY_LIBISCSI = {
    "Inquiry.BlockLimits": _THIN,
    "WriteSame10.Unmap": _THIN,
    "WriteSame10.UnmapUnaligned": _THIN,
    "WriteSame10.UnmapUntilEnd": _THIN,
    "WriteSame10.InvalidDataOutSize": _THIN,
}
FULL_VARIABLE = "ISCSI_HA_CONFORMANCE"
TOOL = "iscsi-test-cu"


def core_tests(listing):
    """``Family.Test`` names of the core set in ``iscsi-test-cu --list`` output."""
    found = []
    for line in listing.splitlines():
        parts = line.strip().split(".")
        if len(parts) == 3 and parts[0] == "ALL" and parts[1] in FAMILIES:
            found.append("%s.%s" % (parts[1], parts[2]))
    return found


_TEST = re.compile(r"^  Test: (\S+) \.\.\.(.*)$")


def parse_results(output):
    """``{"Family.Test": "passed" | "skipped" | "failed"}`` from verbose output."""
    results, suite, current, text = {}, None, None, []

    def close():
        if current is not None:
            joined = "\n".join(text).rstrip()
            results[current] = ("skipped" if "[SKIPPED]" in joined else
                                "passed" if joined.endswith("passed") else "failed")
    for line in output.splitlines():
        started = _TEST.match(line)
        if line.startswith("Suite: ") or started or line.startswith("Run Summary:"):
            close()
            current, text = None, []
        if line.startswith("Suite: "):
            suite = line[len("Suite: "):].strip()
        elif started:
            current, text = "%s.%s" % (suite, started.group(1)), [started.group(2)]
        elif current is not None:
            text.append(line)
    close()
    return results


def run(url, full=False):
    """Run the core set against ``url``; the report a test asserts on."""
    listing = subprocess.check_output([TOOL, "--list"], universal_newlines=True)
    tests = core_tests(listing)
    chosen = [t for t in tests if full or t not in SLOW]
    process = subprocess.run([TOOL, "--dataloss", "--verbose", "--test",
                              ",".join("ALL." + t for t in chosen), url],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=1800)
    results = parse_results(process.stdout)
    return {
        "exit_code": process.returncode,
        "listed": tests,
        "results": results,
        "not_run": sorted(set(chosen) - set(results)),
        "left_out": sorted(set(tests) - set(chosen)),
        "failed": sorted(t for t, r in results.items() if r == "failed"),
        "skipped": sorted(t for t, r in results.items() if r == "skipped"),
        "output": process.stdout if process.returncode or any(
            r == "failed" for r in results.values()) else "",
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        sys.stderr.write("usage: python3 -m tests.lab.conformance URL [--full]\n")
        return 2
    full = "--full" in argv[1:] or os.environ.get(FULL_VARIABLE) == "full"
    report = run(argv[0], full)
    sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0 if report["exit_code"] == 0 and not report["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
