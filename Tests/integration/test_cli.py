"""The CLI's DICOM client commands against real peers: `dicom-bridge echo` (C-ECHO) and
`dicom-bridge store` (C-STORE of files and folders) to DCMTK's storescp, Orthanc and the bridge
itself; their exit codes, their --json output, and that what arrives is what was sent."""

import json
import os
import shutil

import pytest

import harness
from harness import part10

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

SMALL = sorted(n for n in os.listdir(harness.TESTDATA) if n.endswith(".dcm"))


def cli(bridge_bin, *args, timeout=harness.COMMAND_TIMEOUT):
    return harness.run([bridge_bin] + [str(a) for a in args], timeout=timeout)


# -- echo --------------------------------------------------------------------------------------------

def test_echo_storescp_and_orthanc(bridge_bin, storescp_factory, orthanc_factory):
    scp = storescp_factory()
    orthanc = orthanc_factory()
    for port, ae in ((scp.port, scp.ae_title), (orthanc.dicom_port, orthanc.ae_title)):
        r = cli(bridge_bin, "echo", "127.0.0.1", port, "--called-ae", ae)
        assert r.returncode == 0, r.cmdline + "\n" + r.stdout + r.stderr
        assert r.stdout.startswith("C-ECHO 127.0.0.1:%d (%s): " % (port, ae)), r.stdout
        r = cli(bridge_bin, "echo", "127.0.0.1", port, "--called-ae", ae, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["ok"] is True and "error" not in out, out


def test_echo_reaches_the_peer_and_reports_its_refusal(bridge_bin, bridge):
    """Against the bridge (which admits only known calling AEs): a known --calling-ae is answered
    (and logged by the server), an unknown one is rejected and the CLI exits 1 saying so."""
    before = bridge.log_size()
    r = cli(bridge_bin, "echo", "127.0.0.1", bridge.port, "--called-ae", bridge.ae_title, "--calling-ae", "ECHOSCU")
    assert r.returncode == 0, r.stdout + r.stderr
    # Logged before the A-ASSOCIATE-AC goes out: there by the time the CLI has its answer.
    assert "association accepted" in bridge.log_text()[before:] and "ECHOSCU@127.0.0.1 -> %s" % bridge.ae_title \
        in bridge.log_text()[before:], bridge.log_text()[before:]

    r = cli(bridge_bin, "echo", "127.0.0.1", bridge.port, "--called-ae", bridge.ae_title, "--calling-ae", "STRANGER")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("error: C-ECHO to 127.0.0.1:%d failed: " % bridge.port), r.stderr
    assert "reject" in r.stderr.lower(), r.stderr


def test_echo_dead_port_exits_1(bridge_bin, netns):
    port = harness.free_port()  # nothing listens there
    r = cli(bridge_bin, "echo", "127.0.0.1", port, "--called-ae", "NOBODY", "--timeout", "10")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert r.stderr.startswith("error: C-ECHO to 127.0.0.1:%d failed: " % port), r.stderr
    r = cli(bridge_bin, "echo", "127.0.0.1", port, "--called-ae", "NOBODY", "--timeout", "10", "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["error"], out


def test_echo_invalid_arguments_exit_64(bridge_bin):
    """ArgumentParser's validation errors: exit code 64 (EX_USAGE), the reason on stderr."""
    r = cli(bridge_bin, "echo", "127.0.0.1", "70000", "--called-ae", "X")
    assert r.returncode == 64 and "port 70000 is out of range" in r.stderr, r.stderr
    r = cli(bridge_bin, "echo", "127.0.0.1", "104", "--called-ae", "A_TITLE_LONGER_THAN_16")
    assert r.returncode == 64 and "is not a valid AE title" in r.stderr, r.stderr


# -- store -------------------------------------------------------------------------------------------

@pytest.fixture
def study_folder(tmp_path):
    """Every committed test file, half of them in a sub-folder, plus a file that is not DICOM and a
    .json file (which store skips by name)."""
    folder = tmp_path / "to-send"
    sub = folder / "sub" / "deeper"
    sub.mkdir(parents=True)
    for i, name in enumerate(SMALL):
        shutil.copy(os.path.join(harness.TESTDATA, name), str((sub if i % 2 else folder) / name))
    (folder / "README.txt").write_text("not a DICOM file\n")
    (folder / "manifest.json").write_text("{}\n")
    return folder


def by_sop_instance(paths):
    return {part10.read(p)["media_storage_sop_instance_uid"]: p for p in paths}


def test_store_folder_and_file_to_storescp_bit_for_bit(bridge_bin, storescp_factory, study_folder, tmp_path):
    scp = storescp_factory()
    extra = os.path.join(harness.TESTDATA, SMALL[0])  # also named on its own: sent twice
    r = cli(bridge_bin, "store", "127.0.0.1", scp.port, "--called-ae", scp.ae_title, str(study_folder), extra, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == len(SMALL) + 1 and summary["failed"] == 0 and summary["skipped"] == 1, summary
    assert [f["path"] for f in summary["failures"]] == [str(study_folder / "README.txt")], summary
    assert summary["failures"][0]["status"] == "skipped"

    received = by_sop_instance(scp.received())
    sent = by_sop_instance(os.path.join(harness.TESTDATA, n) for n in SMALL)
    assert set(received) == set(sent)
    for uid, path in sent.items():
        got, want = part10.read(received[uid]), part10.read(path)
        assert got["transfer_syntax_uid"] == want["transfer_syntax_uid"], path
        # The dataset as DCMTK puts it on the wire for this file (explicit lengths; testdata/README.md):
        # for every file but ct_undefined_lengths.dcm that is the file's own dataset.
        expected = want["dataset"] if "undefined_lengths" not in path else harness.dcmtk_wire_dataset(path, str(tmp_path))
        assert got["dataset"] == expected, "%s not received bit for bit:\n%s" % (
            path, part10.describe_difference(expected, got["dataset"], "sent", "received"))


@pytest.mark.orthanc
def test_store_to_orthanc(bridge_bin, orthanc_factory, study_folder):
    orthanc = orthanc_factory()
    r = cli(bridge_bin, "store", "127.0.0.1", orthanc.dicom_port, "--called-ae", orthanc.ae_title, str(study_folder))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("Sent %d of %d instances" % (len(SMALL), len(SMALL))), r.stdout
    assert r.stdout.rstrip().endswith(", 1 skipped"), r.stdout
    sent = by_sop_instance(os.path.join(harness.TESTDATA, n) for n in SMALL)
    ids = orthanc.get("/instances")
    stored = {orthanc.get("/instances/%s" % i)["MainDicomTags"]["SOPInstanceUID"]: i for i in ids}
    assert set(stored) == set(sent)
    for uid, path in sent.items():
        meta = orthanc.get("/instances/%s/metadata?expand" % stored[uid])
        assert meta["TransferSyntax"] == part10.read(path)["transfer_syntax_uid"], path
        assert meta["RemoteAET"] == "DICOM_BRIDGE", meta


def test_store_refused_by_the_peer_exits_1_with_every_failure(bridge_bin, bridge, study_folder):
    """The bridge rejects an unknown calling AE: every file fails, listed in --json, exit 1, and
    nothing is stored."""
    r = cli(bridge_bin, "store", "127.0.0.1", bridge.port, "--called-ae", bridge.ae_title, "--calling-ae", "STRANGER",
            str(study_folder), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == 0 and summary["failed"] == len(SMALL) and summary["skipped"] == 1, summary
    failed = [f for f in summary["failures"] if f["status"] == "failed"]
    assert len(failed) == len(SMALL) and all(f["error"] for f in failed), summary
    assert bridge.instances() == []


def test_store_to_the_bridge_then_it_holds_the_files(bridge_bin, bridge, study_folder):
    """`store` with a known calling AE: the bridge stores every file bit for bit (harness.check_stored)."""
    r = cli(bridge_bin, "store", "127.0.0.1", bridge.port, "--called-ae", bridge.ae_title, "--calling-ae", "STORESCU",
            str(study_folder), "--associations", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in SMALL:
        if "undefined_lengths" in name:
            continue  # DCMTK re-encodes its sequences on the wire (testdata/README.md)
        harness.check_stored(bridge, os.path.join(harness.TESTDATA, name))


def test_store_without_dicom_files_or_to_a_dead_port_exits_1(bridge_bin, tmp_path, netns):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello\n")
    r = cli(bridge_bin, "store", "127.0.0.1", "104", "--called-ae", "X", str(empty))
    assert r.returncode == 1 and "error: no DICOM files found in %s" % empty in r.stderr, r.stderr

    port = harness.free_port()
    r = cli(bridge_bin, "store", "127.0.0.1", port, "--called-ae", "X", os.path.join(harness.TESTDATA, SMALL[0]),
            "--json", "--timeout", "10")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == 0 and summary["failed"] == 1, summary
