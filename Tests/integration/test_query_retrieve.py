"""Query/Retrieve conformance of `dicom-bridge serve` (PS3.4 annex C; docs/query.md).

One module-scoped bridge holds a generated corpus (5 patients in Latin-1, UTF-8, ISO 2022 IR 87,
Greek and ASCII; 2 studies each, 3 series per study, 2 instances per series, the four uncompressed
transfer syntaxes in turn), a second generated corpus in Explicit VR Little Endian only, and every
committed testdata/*.dcm (JPEG, JPEG-LS, RLE, JPEG 2000, deflated, big endian). Every answer is
checked against an answer computed here, independently, from manifest.json and small.json by a
reference implementation of the matching rules of docs/query.md:

- C-FIND with DCMTK's findscu (answers extracted with -X and read with pydicom, statuses from -d)
  and with pynetdicom, Patient Root and Study Root, every level: the set of matched UIDs, every
  returned value, nothing returned that was not asked for (besides the unique keys), zero-length
  values for keys the bridge does not hold, Specific Character Set ISO_IR 192;
- failures (A900, C000, A700 at the configured cap), C-CANCEL (FE00), refusals (0124);
- C-MOVE (movescu, pynetdicom, the CLI) to DCMTK's storescp and to a second bridge, C-GET (getscu,
  pynetdicom, the CLI): the dataset bytes received equal the bytes the bridge stored;
- transfer syntax fallback of C-MOVE to a destination that takes Explicit VR Little Endian only;
- Orthanc querying and retrieving from the bridge over its REST API, and the CLI against Orthanc.
"""

import collections
import json
import os
import re
import tempfile
import unicodedata
import warnings
import zlib

import pytest

import harness
from harness import part10

import pydicom  # noqa: E402
import pynetdicom  # noqa: E402
from pydicom.datadict import dictionary_VR, tag_for_keyword  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.multival import MultiValue  # noqa: E402

pytestmark = [pytest.mark.bridge, pytest.mark.netns]

FINDSCU = harness.DCMTK_BIN + "/findscu"
MOVESCU = harness.DCMTK_BIN + "/movescu"
GETSCU = harness.DCMTK_BIN + "/getscu"
DCMDJPEG = harness.DCMTK_BIN + "/dcmdjpeg"

MODELS = {
    "patient": {"find": "1.2.840.10008.5.1.4.1.2.1.1", "move": "1.2.840.10008.5.1.4.1.2.1.2",
                "get": "1.2.840.10008.5.1.4.1.2.1.3", "dcmtk": "-P"},
    "study": {"find": "1.2.840.10008.5.1.4.1.2.2.1", "move": "1.2.840.10008.5.1.4.1.2.2.2",
              "get": "1.2.840.10008.5.1.4.1.2.2.3", "dcmtk": "-S"},
}
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UNCOMPRESSED = {"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.2"}

# Calling AE titles the module's bridge knows (all from 127.0.0.1).
CALLERS = ("STORESCU", "PYNETDICOM", "FINDSCU", "MOVESCU", "GETSCU", "CLI", "ORTHANC")

MIXED = dict(patients=5, studies=2, series=3, instances=2, seed=11, transfer_syntax="mixed")
EXPLICIT = dict(patients=1, studies=1, series=2, instances=3, seed=12, transfer_syntax="explicit")


def mixed_pid(n):
    return "DBT0011-%05d" % n


EXPLICIT_PID = "DBT0012-00000"


# == The reference: what the answer must be, computed from the manifests ============================

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}
ATTRIBUTES = {
    "PATIENT": ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
              "ReferringPhysicianName"),
    "SERIES": ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined"),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
COUNTS = {
    "NumberOfPatientRelatedStudies": "PATIENT", "NumberOfPatientRelatedSeries": "PATIENT",
    "NumberOfPatientRelatedInstances": "PATIENT", "NumberOfStudyRelatedSeries": "STUDY",
    "NumberOfStudyRelatedInstances": "STUDY", "NumberOfSeriesRelatedInstances": "SERIES",
}
KEY_LEVEL = {kw: lvl for lvl, kws in ATTRIBUTES.items() for kw in kws}
KEY_LEVEL.update(COUNTS)
KEY_LEVEL["ModalitiesInStudy"] = "STUDY"
WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
# Not matched, filled by the SCP (PS3.4 C.4.1.1.3.2).
FILLED_BY_SCP = {"RetrieveAETitle": "BRIDGE", "InstanceAvailability": "ONLINE"}


def glob_match(pattern, text):
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.DOTALL) is not None


def pn_canonical(name):
    """Spaces around components, trailing empty components and groups dropped; NFC; lower case."""
    groups = []
    for g in name.split("="):
        comps = [c.strip(" ") for c in g.split("^")]
        while comps and comps[-1] == "":
            comps.pop()
        groups.append("^".join(comps))
    while groups and groups[-1] == "":
        groups.pop()
    return unicodedata.normalize("NFC", "=".join(groups)).lower()


def pn_match(pattern, value):
    """docs/query.md "Person names": case-insensitive; a query without '=' also against the first
    (alphabetic) group; a query without '^' nor '=' also against the family name."""
    if not value:
        return False
    p, v = pn_canonical(pattern), pn_canonical(value)
    candidates = [v]
    if "=" not in p:
        first = v.split("=")[0]
        candidates.append(first)
        if "^" not in p:
            candidates.append(first.split("^")[0])
    return any(glob_match(p, c) for c in candidates)


def tm_low(t):
    t = t.replace(":", "")
    frac = t[7:] if len(t) > 7 else ""
    return t[0:2] + (t[2:4] or "00") + (t[4:6] or "00") + "." + frac.ljust(6, "0")


def tm_high(t):
    """The end of the period a partial time names: 1800 is 18:00:59.999999."""
    t = t.replace(":", "")
    frac = t[7:] if len(t) > 7 else ""
    return t[0:2] + (t[2:4] or "59") + (t[4:6] or "59") + "." + (frac.ljust(6, "9") if frac else "999999")


def match_single(vr, p, value):
    if vr == "UI":
        return p == value
    if vr == "DA":
        if not value:
            return False
        if "-" in p:
            lo, hi = p.split("-", 1)
            return (not lo or value >= lo) and (not hi or value <= hi)
        return p == value
    if vr == "TM":
        if not value:
            return False
        v = tm_low(value)
        if "-" in p:
            lo, hi = p.split("-", 1)
            return (not lo or v >= tm_low(lo)) and (not hi or v <= tm_high(hi))
        return tm_low(p) <= v <= tm_high(p)
    if vr == "PN":
        return pn_match(p, value)
    if vr == "IS":
        return p.strip() == value.strip()
    if vr in WILDCARD_VRS and ("*" in p or "?" in p):
        return glob_match(p, value)
    return p == value


def is_universal(vr, p):
    return (p == "" or (vr in WILDCARD_VRS and set(p) == {"*"}) or (vr in ("UI", "IS") and p == "*")
            or (vr == "DA" and p == "-"))


class Reference:
    """Patients, studies, series and instances of the manifests, with the counts and Modalities in
    Study computed here; find() answers a C-FIND the way docs/query.md says the bridge must."""

    def __init__(self, records):
        self.records = records
        self.entities = {lvl: {} for lvl in LEVELS}
        children = collections.defaultdict(set)
        for r in records:
            chain = {}
            for lvl in LEVELS:
                chain.update({kw: r[kw] for kw in ATTRIBUTES[lvl]})
                uid = r[UNIQUE[lvl]]
                ent = self.entities[lvl].setdefault(uid, dict(chain))
                assert all(ent[kw] == r[kw] for kw in ATTRIBUTES[lvl]), "inconsistent manifests for %s" % uid
            children[("p", r["PatientID"], "st")].add(r["StudyInstanceUID"])
            children[("p", r["PatientID"], "se")].add(r["SeriesInstanceUID"])
            children[("p", r["PatientID"], "im")].add(r["SOPInstanceUID"])
            children[("st", r["StudyInstanceUID"], "se")].add(r["SeriesInstanceUID"])
            children[("st", r["StudyInstanceUID"], "im")].add(r["SOPInstanceUID"])
            children[("st", r["StudyInstanceUID"], "mod")].add(r["Modality"])
            children[("se", r["SeriesInstanceUID"], "im")].add(r["SOPInstanceUID"])
        computed = {}
        for pid in self.entities["PATIENT"]:
            computed[pid] = {"NumberOfPatientRelatedStudies": str(len(children[("p", pid, "st")])),
                             "NumberOfPatientRelatedSeries": str(len(children[("p", pid, "se")])),
                             "NumberOfPatientRelatedInstances": str(len(children[("p", pid, "im")]))}
        for st in self.entities["STUDY"]:
            computed[st] = {"NumberOfStudyRelatedSeries": str(len(children[("st", st, "se")])),
                            "NumberOfStudyRelatedInstances": str(len(children[("st", st, "im")])),
                            "ModalitiesInStudy": "\\".join(sorted(children[("st", st, "mod")]))}
        for se in self.entities["SERIES"]:
            computed[se] = {"NumberOfSeriesRelatedInstances": str(len(children[("se", se, "im")]))}
        for lvl in LEVELS:
            for ent in self.entities[lvl].values():
                for above in LEVELS[:LEVELS.index(lvl) + 1]:
                    ent.update(computed.get(ent[UNIQUE[above]], {}))

    # -- navigation (for building queries) --
    def studies(self, pid):
        return sorted((e for e in self.entities["STUDY"].values() if e["PatientID"] == pid),
                      key=lambda e: int(e["StudyID"]))

    def study(self, pid, i):
        return self.studies(pid)[i]

    def series(self, study_uid):
        return sorted((e for e in self.entities["SERIES"].values() if e["StudyInstanceUID"] == study_uid),
                      key=lambda e: int(e["SeriesNumber"]))

    def instances(self, series_uid):
        return sorted((e for e in self.entities["IMAGE"].values() if e["SeriesInstanceUID"] == series_uid),
                      key=lambda e: int(e["InstanceNumber"]))

    def small(self, name):
        return next(r for r in self.records if r.get("_small") == name)

    # -- C-FIND --
    def find(self, level, keys):
        """{unique key value: {keyword: expected value}} for a C-FIND at `level` with `keys`
        ({keyword: value}, "" for a return key)."""
        depth = LEVELS.index(level)
        out = {}
        for uid, ent in self.entities[level].items():
            if all(self._matches(kw, p, ent, depth) for kw, p in keys.items()):
                out[uid] = {kw: self.value(kw, ent, depth) for kw in keys}
        return out

    @staticmethod
    def _matches(kw, pattern, ent, depth):
        if kw in FILLED_BY_SCP or kw in COUNTS or kw not in KEY_LEVEL:
            return True  # not matched (return keys only, or not held)
        if LEVELS.index(KEY_LEVEL[kw]) > depth:
            return True  # a key below the query level: answered zero length, not matched
        vr = "CS" if kw == "ModalitiesInStudy" else dictionary_VR(kw)
        p = pattern.strip(" ").rstrip("\x00")
        if is_universal(vr, p):
            return True
        if kw == "ModalitiesInStudy":
            return any(match_single("CS", v, m) for v in p.split("\\") for m in ent[kw].split("\\"))
        return any(match_single(vr, v, ent[kw]) for v in p.split("\\"))

    @staticmethod
    def value(kw, ent, depth):
        if kw in FILLED_BY_SCP:
            return FILLED_BY_SCP[kw]
        if kw not in KEY_LEVEL or LEVELS.index(KEY_LEVEL[kw]) > depth:
            return ""
        return ent[kw]

    def retrieve(self, level, keys):
        """The SOP Instance UIDs a retrieve with these unique keys selects."""
        out = set()
        for r in self.records:
            ok = True
            for kw, v in keys.items():
                if kw in UNIQUE.values():
                    ok = ok and r[kw] in v.split("\\")
            if ok:
                out.add(r["SOPInstanceUID"])
        return out


def unique_keys(model, level):
    """The unique keys every answer carries: those of the level and of every level above it in the model."""
    first = 0 if model == "patient" else 1
    return {UNIQUE[lvl] for lvl in LEVELS[first:LEVELS.index(level) + 1]}


# == Running queries ===================================================================================

FindResult = collections.namedtuple("FindResult", "final pending answers detail output")


def element_text(ds, kw):
    """An element's value as the text a DICOM string would hold ('' when zero length)."""
    v = ds[kw].value
    if v is None:
        return ""
    if isinstance(v, (MultiValue, list, tuple)):
        return "\\".join(str(x) for x in v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def tag_arg(kw):
    if re.fullmatch(r"[0-9a-fA-F]{4},[0-9a-fA-F]{4}", kw):
        return kw
    tag = tag_for_keyword(kw)
    assert tag is not None, kw
    return "%04x,%04x" % (tag >> 16, tag & 0xFFFF)


def dimse_statuses(output, message_type):
    """Statuses of the DIMSE messages of one type in DCMTK's -d output, in order."""
    out = []
    for block in output.split("DIMSE MESSAGE")[1:]:
        m = re.search(r"Message Type\s*:\s*(\S+ \S+)", block)
        s = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", block)
        if m and s and m.group(1) == message_type:
            out.append(int(s.group(1), 16))
    return out


def findscu(port, model, level, keys, workdir, calling_ae="FINDSCU", charset="ISO_IR 192", extra=()):
    out = tempfile.mkdtemp(prefix="findscu-", dir=str(workdir))
    cmd = [FINDSCU, "-d", MODELS[model]["dcmtk"], "-aet", calling_ae, "-aec", "BRIDGE", "-to", "20", "-ta", "20",
           "-td", "60", "-X", "-od", out]
    if level is not None:
        cmd += ["-k", "0008,0052=" + level]
    if charset:
        cmd += ["-k", "0008,0005=" + charset]
    for kw, v in keys.items():
        cmd += ["-k", "%s=%s" % (tag_arg(kw), v)]
    r = harness.run(cmd + list(extra) + ["127.0.0.1", str(port)], timeout=120)
    statuses = dimse_statuses(r.stdout + r.stderr, "C-FIND RSP")
    assert statuses, "no C-FIND response from findscu:\n%s\n%s" % (r.stdout[-3000:], r.stderr[-3000:])
    answers = [pydicom.dcmread(os.path.join(out, f)) for f in sorted(os.listdir(out))]
    detail = re.findall(r"\(0000,0902\) LO \[([^\]]*)\]", r.stdout + r.stderr)
    return FindResult(statuses[-1], statuses[:-1], answers, detail[-1] if detail else None, r.stdout + r.stderr)


def build_identifier(level, keys, charset="ISO_IR 192"):
    ds = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deliberately invalid values ("2020-01-01", "*" in a UI)
        if charset:
            ds.SpecificCharacterSet = charset
        if level is not None:
            ds.QueryRetrieveLevel = level
        for kw, v in keys.items():
            if re.fullmatch(r"[0-9a-fA-F]{4},[0-9a-fA-F]{4}", kw):
                g, e = (int(x, 16) for x in kw.split(","))
                ds.add_new((g, e), "LO", v)
            else:
                setattr(ds, kw, v)
    return ds


def pyn_ae(calling_ae, *contexts):
    from pynetdicom import AE
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for c in contexts:
        ae.add_requested_context(c)
    return ae


def pyn_find(port, model, level, keys, calling_ae="PYNETDICOM", charset="ISO_IR 192", cancel=False, identifier=None):
    sop = MODELS[model]["find"]
    ae = pyn_ae(calling_ae, sop)
    assoc = ae.associate("127.0.0.1", port, ae_title="BRIDGE")
    assert assoc.is_established, "pynetdicom: no association with the bridge as %s" % calling_ae
    ds = identifier if identifier is not None else build_identifier(level, keys, charset)
    pending, answers, final, detail = [], [], None, None
    try:
        responses = assoc.send_c_find(ds, sop, msg_id=7)
        if cancel:
            assoc.send_c_cancel(7, query_model=sop)  # before reading anything: mid-query
        for status, ident in responses:
            assert status, "pynetdicom: no response (connection lost or timed out)"
            if status.Status in (0xFF00, 0xFF01):
                pending.append(status.Status)
                answers.append(ident)
            else:
                final = status.Status
                detail = status.get("ErrorComment")
    finally:
        assoc.release()
    assert final is not None
    return FindResult(final, pending, answers, str(detail) if detail is not None else None, None)


def run_find(tool, port, model, level, keys, workdir, **kw):
    if tool == "findscu":
        return findscu(port, model, level, keys, workdir, **kw)
    return pyn_find(port, model, level, keys, **kw)


def check_answers(result, ref, model, level, keys, allow_pending=(0xFF00,)):
    """The answers are exactly the entities the reference selects, with exactly its values, and
    nothing else than the keys asked for, the unique keys of the model, (0008,0005) and (0008,0052).
    Returns the expected answers."""
    expected = ref.find(level, keys)
    assert result.final == 0x0000, "final status %04X (%s), expected 0000" % (result.final, result.detail)
    assert set(result.pending) <= set(allow_pending), ["%04X" % s for s in result.pending]
    assert len(result.pending) == len(result.answers)
    uid_kw = UNIQUE[level]
    got = {}
    for ds in result.answers:
        uid = element_text(ds, uid_kw)
        assert uid not in got, "%s %s answered twice" % (uid_kw, uid)
        got[uid] = ds
    missing, unexpected = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not unexpected, "missing %s; unexpected %s" % (sorted(missing), sorted(unexpected))
    allowed = set(keys) | unique_keys(model, level) | {"SpecificCharacterSet", "QueryRetrieveLevel"}
    for uid, ds in got.items():
        assert element_text(ds, "SpecificCharacterSet") == "ISO_IR 192"
        assert element_text(ds, "QueryRetrieveLevel").strip() == level
        present = {e.keyword or str(e.tag) for e in ds}
        assert present == allowed, "%s: returned but not asked for %s; asked for but missing %s" % (
            uid, sorted(present - allowed), sorted(allowed - present))
        for kw, want in expected[uid].items():
            have = element_text(ds, kw)
            assert have == want, "%s of %s: got %r, expected %r" % (kw, uid, have, want)
    return expected


# == Fixtures ==============================================================================================

class QR:
    """The module's bridge and what it holds."""

    def __init__(self, bridge, ref, workdir):
        self.bridge = bridge
        self.ref = ref
        self.workdir = workdir
        self.port = bridge.port
        self.stored = {}  # SOP Instance UID -> part10.read() of the stored file
        for row in bridge.instances():
            self.stored[row["sop_instance_uid"]] = dict(part10.read(bridge.stored_path(row)), row=row)

    def add_destination(self, ae_title, port, *flags):
        self.bridge.cli("ae", "add", ae_title, "--host", "127.0.0.1", "--port", port, *flags)

    def pairs(self, uids=None):
        """(SOP class, transfer syntax) of the stored instances."""
        return sorted({(s["media_storage_sop_class_uid"], s["transfer_syntax_uid"])
                       for u, s in self.stored.items() if uids is None or u in uids})


@pytest.fixture(scope="module")
def qr(module_bridge_factory, corpus_factory, small_files, tmp_path_factory):
    mixed_dir, mixed = corpus_factory(**MIXED)
    explicit_dir, explicit = corpus_factory(**EXPLICIT)
    b = module_bridge_factory(known_aes=CALLERS)
    b.cli("ae", "add", "NOQUERY", "--host", "127.0.0.1", "--no-query")
    b.cli("ae", "add", "NORETRIEVE", "--host", "127.0.0.1", "--no-retrieve")
    b.cli("ae", "add", "MOVELIMITED", "--host", "127.0.0.1", "--move-to", "ONLYHERE")
    records, paths = [], []
    for folder, manifest in ((mixed_dir, mixed), (explicit_dir, explicit)):
        for f in manifest["files"]:
            records.append(dict(f))
            paths.append(os.path.join(folder, f["path"]))
    for path, entry in small_files.items():
        records.append(dict(entry, _small=os.path.basename(path)))
        paths.append(path)
    r = harness.storescu(b.port, b.ae_title, paths, calling_ae="STORESCU")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b.wait_for_instances(len(paths)) == len(paths)
    q = QR(b, Reference(records), tmp_path_factory.mktemp("qr"))
    assert set(q.stored) == {r["SOPInstanceUID"] for r in records}
    return q


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


# == C-FIND: every level, both models, every kind of matching ===========================================

PATIENT_RETURN = {"PatientName": "", "PatientID": "", "IssuerOfPatientID": "", "PatientBirthDate": "",
                  "PatientSex": ""}
PATIENT_COUNTS = {"NumberOfPatientRelatedStudies": "", "NumberOfPatientRelatedSeries": "",
                  "NumberOfPatientRelatedInstances": ""}
STUDY_RETURN = {"StudyInstanceUID": "", "StudyDate": "", "StudyTime": "", "AccessionNumber": "", "StudyID": "",
                "StudyDescription": "", "ReferringPhysicianName": "", "ModalitiesInStudy": "",
                "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": ""}
SERIES_RETURN = {"SeriesInstanceUID": "", "Modality": "", "SeriesNumber": "", "SeriesDescription": "",
                 "BodyPartExamined": "", "NumberOfSeriesRelatedInstances": ""}
IMAGE_RETURN = {"SOPInstanceUID": "", "SOPClassUID": "", "InstanceNumber": ""}
# Attributes the index does not hold come back zero length; these two the SCP fills in.
NOT_HELD = {"OtherPatientIDs": "", "InstitutionName": "", "RetrieveAETitle": "", "InstanceAvailability": ""}


def keys(*dicts, **values):
    out = {}
    for d in dicts:
        out.update(d)
    out.update(values)
    return out


def st(ref, n, i=0):
    return ref.study(mixed_pid(n), i)


def se(ref, n, i=0, j=0):
    return ref.series(st(ref, n, i)["StudyInstanceUID"])[j]


# (id, model, level, keys(ref), what the reference must select: "all", "some" (not all) or "none")
FIND_CASES = [
    # -- Study Root, STUDY level --------------------------------------------------------------------------
    ("study-universal", "study", "STUDY", lambda r: keys(PATIENT_RETURN, STUDY_RETURN, NOT_HELD,
                                                         NumberOfPatientRelatedStudies=""), "all"),
    ("study-single-patient-id", "study", "STUDY", lambda r: keys(STUDY_RETURN, PatientID=mixed_pid(1)), "some"),
    ("study-single-accession", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, AccessionNumber=st(r, 2, 1)["AccessionNumber"]), "some"),
    ("study-universal-star", "study", "STUDY", lambda r: keys(STUDY_RETURN, PatientName="*", AccessionNumber="**"),
     "all"),
    ("study-wildcard-star", "study", "STUDY", lambda r: keys(STUDY_RETURN, AccessionNumber="A0011*"), "some"),
    ("study-wildcard-qmark", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, AccessionNumber=st(r, 0)["AccessionNumber"][:-1] + "?"), "some"),
    ("study-wildcard-lo-nonascii", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, StudyDescription="CT Thorax (?bersicht*"), "some"),
    ("study-wildcard-lo-inner", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyDescription="*Thorax*"), "some"),
    ("study-date-single", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyDate=st(r, 1)["StudyDate"]), "some"),
    ("study-date-range", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyDate="20200101-20221231"), "some"),
    ("study-date-open-start", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyDate="-20171231"), "some"),
    ("study-date-open-end", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyDate="20230101-"), "some"),
    ("study-date-universal-dash", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyDate="-"), "all"),
    ("study-time-range", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyTime="0800-1200"), "some"),
    ("study-time-open-start", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyTime="-0830"), "some"),
    ("study-time-open-end", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyTime="1900-"), "some"),
    ("study-time-single-period", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, StudyTime=st(r, 0)["StudyTime"][:4]), "some"),
    ("study-time-fraction", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, StudyTime=st(r, 0, 1)["StudyTime"]), "some"),
    ("study-uid-list", "study", "STUDY", lambda r: keys(STUDY_RETURN, StudyInstanceUID="\\".join(
        [st(r, 0)["StudyInstanceUID"], st(r, 3, 1)["StudyInstanceUID"], r.small("ct_rle.dcm")["StudyInstanceUID"]])),
     "some"),
    ("study-modalities-single", "study", "STUDY", lambda r: keys(STUDY_RETURN, ModalitiesInStudy="MR"), "some"),
    ("study-modalities-list", "study", "STUDY", lambda r: keys(STUDY_RETURN, ModalitiesInStudy="CT\\US"), "some"),
    ("study-modalities-wildcard", "study", "STUDY", lambda r: keys(STUDY_RETURN, ModalitiesInStudy="D?"), "some"),
    ("study-multiple-values-cs", "study", "STUDY", lambda r: keys(PATIENT_RETURN, STUDY_RETURN, PatientSex="F\\O"),
     "some"),
    ("study-combined", "study", "STUDY",
     lambda r: keys(PATIENT_RETURN, STUDY_RETURN, PatientSex="M", StudyDate="20190101-", ModalitiesInStudy="C*",
                    PatientName="*"), "some"),
    ("study-birth-date-range", "study", "STUDY",
     lambda r: keys(PATIENT_RETURN, StudyInstanceUID="", PatientBirthDate="19300101-19391231"), "some"),
    ("study-referring-pn-case", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, ReferringPhysicianName="house^gregory^^dr"), "some"),
    ("study-referring-pn-first-group", "study", "STUDY",
     lambda r: keys(STUDY_RETURN, ReferringPhysicianName="sato^jiro"), "some"),
    ("study-no-match", "study", "STUDY", lambda r: keys(STUDY_RETURN, AccessionNumber="NO-SUCH-ACCESSION"), "none"),
    # -- person names (docs/query.md "Person names") ------------------------------------------------------------
    ("pn-family-name-lowercase", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                                  PatientName="schäfer"), "some"),
    ("pn-uppercase-nonascii", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                               PatientName="MÜLLER^JÜRGEN"), "some"),
    ("pn-spaces-and-empty-components", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                                        PatientName="doe ^john^^"), "some"),
    ("pn-components-exact", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                             PatientName="smith^jane"), "none"),
    ("pn-all-components", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                           PatientName="SMITH^JANE^Q"), "some"),
    ("pn-wildcard-given-name", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                                PatientName="smith^j*"), "some"),
    ("pn-family-wildcard", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                            PatientName="doe*"), "some"),
    ("pn-qmark-nonascii", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                           PatientName="nguy?n^*"), "some"),
    ("pn-greek-uppercase", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                            PatientName="ΓΕΩΡΓΊΟΥ"), "some"),
    ("pn-decomposed", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                       PatientName="mu\u0308ller^ju\u0308rgen"), "some"),
    ("pn-accents-significant", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                                PatientName="Muller^Jurgen"), "none"),
    ("pn-first-group", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                        PatientName="tanaka^ichiro"), "some"),
    ("pn-ideographic-wildcard", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                                 PatientName="*山田*"), "some"),
    ("pn-all-groups", "study", "STUDY", lambda r: keys(PATIENT_RETURN, StudyInstanceUID="",
                                                       PatientName="TANAKA^ICHIRO=田中^一郎=*"), "some"),
    # -- Study Root, SERIES and IMAGE levels -----------------------------------------------------------------
    ("series-all-of-study", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, PatientName="", StudyDate="", StudyDescription="", NumberOfStudyRelatedInstances="",
        StudyInstanceUID=st(r, 0)["StudyInstanceUID"]), "some"),
    ("series-modality-list", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, StudyInstanceUID=st(r, 3)["StudyInstanceUID"], Modality="MR\\SC"), "some"),
    ("series-description-wildcard", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, StudyInstanceUID=st(r, 0, 1)["StudyInstanceUID"], SeriesDescription="*tra"), "some"),
    ("series-number", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, StudyInstanceUID=st(r, 0, 1)["StudyInstanceUID"], SeriesNumber="2"), "some"),
    ("series-body-part-wildcard", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, StudyInstanceUID=st(r, 0, 1)["StudyInstanceUID"], BodyPartExamined="K*"), "some"),
    ("series-uid-list", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, StudyInstanceUID=st(r, 1)["StudyInstanceUID"],
        SeriesInstanceUID=se(r, 1, 0, 0)["SeriesInstanceUID"] + "\\" + se(r, 1, 0, 2)["SeriesInstanceUID"]), "some"),
    ("series-upper-level-key-matched", "study", "SERIES", lambda r: keys(
        SERIES_RETURN, StudyInstanceUID=st(r, 1)["StudyInstanceUID"], PatientName="nobody"), "none"),
    ("image-all-of-series", "study", "IMAGE", lambda r: keys(
        IMAGE_RETURN, NumberOfSeriesRelatedInstances="", Modality="", PatientID="",
        StudyInstanceUID=se(r, 2, 1, 0)["StudyInstanceUID"], SeriesInstanceUID=se(r, 2, 1, 0)["SeriesInstanceUID"]),
     "some"),
    ("image-uid-list", "study", "IMAGE", lambda r: keys(
        IMAGE_RETURN, StudyInstanceUID=se(r, 4)["StudyInstanceUID"], SeriesInstanceUID=se(r, 4)["SeriesInstanceUID"],
        SOPInstanceUID="\\".join(i["SOPInstanceUID"] for i in r.instances(se(r, 4)["SeriesInstanceUID"])[1:])),
     "some"),
    ("image-instance-number", "study", "IMAGE", lambda r: keys(
        IMAGE_RETURN, StudyInstanceUID=se(r, 3)["StudyInstanceUID"], SeriesInstanceUID=se(r, 3)["SeriesInstanceUID"],
        InstanceNumber="2"), "some"),
    # -- Patient Root ---------------------------------------------------------------------------------------
    ("patient-universal", "patient", "PATIENT", lambda r: keys(PATIENT_RETURN, PATIENT_COUNTS, NOT_HELD), "all"),
    ("patient-name-wildcard-nonascii", "patient", "PATIENT", lambda r: keys(PATIENT_RETURN, PATIENT_COUNTS,
                                                                            PatientName="*ü*"), "some"),
    ("patient-id-qmark", "patient", "PATIENT", lambda r: keys(PATIENT_RETURN, PatientID="DBTSMALL-1?"), "some"),
    ("patient-birth-date-open-start", "patient", "PATIENT", lambda r: keys(PATIENT_RETURN,
                                                                          PatientBirthDate="-19401231"), "some"),
    ("patient-sex", "patient", "PATIENT", lambda r: keys(PATIENT_RETURN, PATIENT_COUNTS, PatientSex="F"), "some"),
    ("patient-issuer", "patient", "PATIENT", lambda r: keys(PATIENT_RETURN, IssuerOfPatientID="DBTEST"), "all"),
    ("patient-root-study", "patient", "STUDY", lambda r: keys(PATIENT_RETURN, STUDY_RETURN, NOT_HELD,
                                                              PatientID=mixed_pid(3)), "some"),
    ("patient-root-study-date-range", "patient", "STUDY", lambda r: keys(
        STUDY_RETURN, PatientID=mixed_pid(3), StudyDate="20210201-20210228"), "some"),
    ("patient-root-series", "patient", "SERIES", lambda r: keys(
        SERIES_RETURN, PatientName="", StudyDate="", PatientID=mixed_pid(2),
        StudyInstanceUID=st(r, 2, 1)["StudyInstanceUID"]), "some"),
    ("patient-root-image", "patient", "IMAGE", lambda r: keys(
        IMAGE_RETURN, NOT_HELD, PatientID=mixed_pid(1), StudyInstanceUID=se(r, 1, 1, 1)["StudyInstanceUID"],
        SeriesInstanceUID=se(r, 1, 1, 1)["SeriesInstanceUID"]), "some"),
]


def check_selectivity(ref, level, k, expect):
    n_all = len(ref.entities[level]) if level in ("PATIENT", "STUDY") else None
    n = len(ref.find(level, k))
    if expect == "none":
        assert n == 0, "the reference selects %d: the case does not test what it says" % n
    elif expect == "all":
        assert n == n_all
    else:
        assert n > 0 and (n_all is None or n < n_all), "the reference selects %d of %s" % (n, n_all)


@pytest.mark.parametrize("tool", ["findscu", "pynetdicom"])
@pytest.mark.parametrize("case", FIND_CASES, ids=[c[0] for c in FIND_CASES])
def test_find_matches_reference(qr, workdir, tool, case):
    _, model, level, make_keys, expect = case
    k = make_keys(qr.ref)
    check_selectivity(qr.ref, level, k, expect)
    result = run_find(tool, qr.port, model, level, k, workdir)
    check_answers(result, qr.ref, model, level, k)


def test_find_keys_below_level_answered_empty_with_ff01(qr, workdir):
    """A key of a lower level, or a count, carrying a value is not matched: answered zero length (the
    count computed) with Pending FF01 "one or more Optional Keys were not supported"."""
    k = keys(STUDY_RETURN, PatientID=mixed_pid(0), Modality="CT", NumberOfStudyRelatedInstances="99")
    for tool in ("findscu", "pynetdicom"):
        result = run_find(tool, qr.port, "study", "STUDY", k, workdir)
        expected = check_answers(result, qr.ref, "study", "STUDY", k, allow_pending=(0xFF01,))
        assert len(expected) == 2 and result.pending == [0xFF01, 0xFF01]
        assert all(e["Modality"] == "" and e["NumberOfStudyRelatedInstances"] == "6" for e in expected.values())


def test_find_query_in_latin1(qr):
    """An identifier in ISO_IR 100 is decoded before matching; the answers are in UTF-8."""
    k = keys(PATIENT_RETURN, StudyInstanceUID="", PatientName="MÜLLER*")
    result = pyn_find(qr.port, "study", "STUDY", k, charset="ISO_IR 100")
    expected = check_answers(result, qr.ref, "study", "STUDY", k)
    assert {e["PatientName"] for e in expected.values()} == {"Müller^Jürgen"}


def test_iso2022_names_answered_decoded(qr):
    """cr_iso2022.dcm and the corpus' Japanese patient: their names come back in UTF-8 as pydicom
    decodes them, and the ideographic group can be matched (docs/query.md: `*山田*`)."""
    k = keys(PATIENT_RETURN, PatientID=mixed_pid(2) + "\\" + qr.ref.small("cr_iso2022.dcm")["PatientID"])
    result = pyn_find(qr.port, "patient", "PATIENT", k)
    check_answers(result, qr.ref, "patient", "PATIENT", k)
    names = sorted(element_text(ds, "PatientName") for ds in result.answers)
    assert names == ["Tanaka^Ichiro=田中^一郎=たなか^いちろう", "Yamada^Tarou=山田^太郎=やまだ^たろう"]
    result = pyn_find(qr.port, "patient", "PATIENT", keys(PATIENT_RETURN, PatientName="*山田*"))
    assert [element_text(ds, "PatientID") for ds in result.answers] == [qr.ref.small("cr_iso2022.dcm")["PatientID"]]


def test_find_sequence_return_key_answered_empty(qr):
    k = keys(StudyInstanceUID=st(qr.ref, 0)["StudyInstanceUID"], StudyDate="")
    ds = build_identifier("STUDY", k)
    ds.ProcedureCodeSequence = []
    result = pyn_find(qr.port, "study", "STUDY", {}, identifier=ds)
    assert result.final == 0 and len(result.answers) == 1
    assert "ProcedureCodeSequence" in result.answers[0], sorted(e.keyword for e in result.answers[0])
    assert len(result.answers[0].ProcedureCodeSequence) == 0


# == C-FIND failures ======================================================================================

FAILURE_CASES = [
    ("missing-level", "study", None, lambda r: {"StudyInstanceUID": ""}, 0xA900),
    ("unknown-level", "study", "FOO", lambda r: {"StudyInstanceUID": ""}, 0xA900),
    ("patient-level-in-study-root", "study", "PATIENT", lambda r: {"PatientID": ""}, 0xA900),
    ("series-without-study-uid", "study", "SERIES", lambda r: {"SeriesInstanceUID": "", "Modality": "CT"}, 0xA900),
    ("series-with-study-uid-wildcard", "study", "SERIES", lambda r: {"StudyInstanceUID": "*"}, 0xA900),
    ("series-with-study-uid-list", "study", "SERIES", lambda r: {"StudyInstanceUID": "\\".join(
        [st(r, 0)["StudyInstanceUID"], st(r, 1)["StudyInstanceUID"]])}, 0xA900),
    ("image-without-series-uid", "study", "IMAGE", lambda r: {"StudyInstanceUID": st(r, 0)["StudyInstanceUID"],
                                                             "SOPInstanceUID": ""}, 0xA900),
    ("patient-root-study-without-patient-id", "patient", "STUDY", lambda r: {"StudyInstanceUID": ""}, 0xA900),
    ("patient-root-series-without-study-uid", "patient", "SERIES",
     lambda r: {"PatientID": mixed_pid(0), "SeriesInstanceUID": ""}, 0xA900),
    ("patient-root-image-without-patient-id", "patient", "IMAGE", lambda r: {
        "StudyInstanceUID": se(r, 0)["StudyInstanceUID"], "SeriesInstanceUID": se(r, 0)["SeriesInstanceUID"],
        "SOPInstanceUID": ""}, 0xA900),
    ("patient-id-wildcard-above-level", "patient", "STUDY", lambda r: {"PatientID": "DBT0011*",
                                                                       "StudyInstanceUID": ""}, 0xA900),
    ("date-with-dashes", "study", "STUDY", lambda r: {"StudyDate": "2020-01-01"}, 0xC000),
    ("date-bad-month", "study", "STUDY", lambda r: {"StudyDate": "20201301"}, 0xC000),
    ("date-range-reversed", "study", "STUDY", lambda r: {"StudyDate": "20220101-20210101"}, 0xC000),
    ("date-retired-format", "patient", "PATIENT", lambda r: {"PatientBirthDate": "1970.01.01"}, 0xC000),
    ("time-out-of-range", "study", "STUDY", lambda r: {"StudyTime": "25"}, 0xC000),
    ("time-range-over-midnight", "study", "STUDY", lambda r: {"StudyTime": "2200-0200"}, 0xC000),
]


@pytest.mark.parametrize("tool", ["findscu", "pynetdicom"])
@pytest.mark.parametrize("case", FAILURE_CASES, ids=[c[0] for c in FAILURE_CASES])
def test_find_failure_status(qr, workdir, tool, case):
    _, model, level, make_keys, status = case
    result = run_find(tool, qr.port, model, level, make_keys(qr.ref), workdir)
    assert result.final == status, "final status %04X (%s), expected %04X" % (result.final, result.detail, status)
    assert result.pending == [] and result.answers == []
    assert result.detail, "no Error Comment (0000,0902) with the failure"


def test_find_cancel(qr):
    """A C-CANCEL-RQ that reaches the bridge in the same TCP segment as its C-FIND-RQ: the bridge
    reads the request, finds the C-CANCEL on its first look (before the first match is sent) and
    answers Cancel (FE00) with no match; the association then answers the same query in full.
    (The bridge sends its matches without waiting for the requester, so a C-CANCEL sent later
    could arrive after the last one: only this order is deterministic.)"""
    k = keys(STUDY_RETURN)
    sop = MODELS["study"]["find"]
    ae = pyn_ae("PYNETDICOM", sop)
    assoc = ae.associate("127.0.0.1", qr.port, ae_title="BRIDGE")
    assert assoc.is_established
    sock = assoc.dul.socket
    real_send = sock.send
    held = []

    def coalescing_send(data):  # pynetdicom's DUL thread: hold the C-FIND-RQ's PDUs until the C-CANCEL
        held.append(data)
        if C_CANCEL_COMMAND in data:
            del sock.send
            real_send(b"".join(held))

    sock.send = coalescing_send
    log_start = qr.bridge.log_size()
    try:
        responses = assoc.send_c_find(build_identifier("STUDY", k), sop, msg_id=7)
        assoc.send_c_cancel(7, query_model=sop)
        statuses = [(status.Status if status else None, ident) for status, ident in responses]
        assert len(held) >= 3, "the C-FIND-RQ and C-CANCEL-RQ did not go out together"
        assert [s for s, _ in statuses] == [0xFE00], ["%04X" % s if s is not None else None for s, _ in statuses]
        qr.bridge.wait_for_log("C-FIND cancelled", start=log_start)
        lines = [l for l in qr.bridge.log_text()[log_start:].splitlines() if "C-FIND" in l]
        assert len(lines) == 1 and "matches=0 " in lines[0] and "C-FIND cancelled" in lines[0], lines
        # The same association answers the query in full.
        pending, answers, final = [], [], None
        for status, ident in assoc.send_c_find(build_identifier("STUDY", k), sop, msg_id=8):
            assert status, "pynetdicom: no response"
            if status.Status in (0xFF00, 0xFF01):
                pending.append(status.Status)
                answers.append(ident)
            else:
                final = status.Status
    finally:
        assoc.release()
    check_answers(FindResult(final, pending, answers, None, None), qr.ref, "study", "STUDY", k)


def test_find_refused_without_query_permission(qr, workdir):
    for tool in ("findscu", "pynetdicom"):
        result = run_find(tool, qr.port, "study", "STUDY", keys(STUDY_RETURN), workdir, calling_ae="NOQUERY")
        assert result.final == 0x0124 and result.answers == []


@pytest.fixture(scope="module")
def capped_bridge(module_bridge_factory, small_files):
    """A bridge whose config.json says maxQueryMatches 3, holding 5 studies."""
    b = module_bridge_factory(ae_title="BRIDGE", known_aes=("STORESCU", "PYNETDICOM", "FINDSCU"), start=False)
    config_path = os.path.join(b.home, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["maxQueryMatches"] = 3
    with open(config_path, "w") as f:
        json.dump(config, f)
    b.start()
    paths = sorted(small_files)[:5]
    r = harness.storescu(b.port, b.ae_title, paths)
    assert r.returncode == 0, r.stdout + r.stderr
    return b, [small_files[p] for p in paths]


@pytest.mark.parametrize("tool", ["findscu", "pynetdicom"])
def test_find_cap_answers_a700(capped_bridge, workdir, tool):
    b, entries = capped_bridge
    result = run_find(tool, b.port, "study", "STUDY", {"StudyInstanceUID": ""}, workdir)
    assert result.final == 0xA700, "final status %04X, expected A700 (Refused: Out of Resources)" % result.final
    assert len(result.answers) == 3 and result.pending == [0xFF00] * 3
    assert {element_text(ds, "StudyInstanceUID") for ds in result.answers} <= {e["StudyInstanceUID"] for e in entries}
    assert result.detail
    # Exactly 3 matches is not over the cap; 4 is.
    uids = [e["StudyInstanceUID"] for e in entries]
    result = run_find(tool, b.port, "study", "STUDY", {"StudyInstanceUID": "\\".join(uids[:3])}, workdir)
    assert result.final == 0x0000 and len(result.answers) == 3
    result = run_find(tool, b.port, "study", "STUDY", {"StudyInstanceUID": "\\".join(uids[:4])}, workdir)
    assert result.final == 0xA700 and len(result.answers) == 3


# == C-MOVE and C-GET ======================================================================================

RetrieveResult = collections.namedtuple("RetrieveResult", "final pending counts failed_uids detail output")
COUNT_NAMES = ("Remaining", "Completed", "Failed", "Warning")


def retrieve_identifier_args(level, keys):
    args = ["-k", "0008,0052=" + level]
    for kw, v in keys.items():
        args += ["-k", "%s=%s" % (tag_arg(kw), v)]
    return args


def dcmtk_retrieve_responses(output, message_type):
    """[(status, {Remaining: n, ...})] of the C-MOVE or C-GET responses in DCMTK's -d output."""
    out = []
    for block in output.split("DIMSE MESSAGE")[1:]:
        m = re.search(r"Message Type\s*:\s*(\S+ \S+)", block)
        s = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", block)
        if not (m and s and m.group(1) == message_type):
            continue
        counts = {}
        for name in COUNT_NAMES:
            c = re.search(name + r" Suboperations\s*:\s*(\d+)", block)
            counts[name] = int(c.group(1)) if c else None
        out.append((int(s.group(1), 16), counts))
    return out


def movescu(port, model, level, keys, destination, calling_ae="MOVESCU"):
    cmd = [MOVESCU, "-d", MODELS[model]["dcmtk"], "-aet", calling_ae, "-aec", "BRIDGE", "-aem", destination,
           "-to", "20", "-ta", "20", "-td", "120"] + retrieve_identifier_args(level, keys) + ["127.0.0.1", str(port)]
    r = harness.run(cmd, timeout=300)
    out = r.stdout + r.stderr
    responses = dcmtk_retrieve_responses(out, "C-MOVE RSP")
    assert responses, "no C-MOVE response:\n" + out[-3000:]
    failed = re.findall(r"\(0008,0058\) UI \[([^\]]*)\]", out)
    detail = re.findall(r"\(0000,0902\) LO \[([^\]]*)\]", out)
    return RetrieveResult(responses[-1][0], responses[:-1], responses[-1][1],
                          failed[-1].split("\\") if failed else [], detail[-1] if detail else None, out)


def getscu(port, model, level, keys, outdir, calling_ae="GETSCU", extra=()):
    os.makedirs(outdir, exist_ok=True)
    cmd = [GETSCU, "-d", MODELS[model]["dcmtk"], "+B", "-aet", calling_ae, "-aec", "BRIDGE", "-od", outdir,
           "-to", "20", "-ta", "20", "-td", "120"] + list(extra) + retrieve_identifier_args(level, keys) \
        + ["127.0.0.1", str(port)]
    r = harness.run(cmd, timeout=300)
    out = r.stdout + r.stderr
    responses = dcmtk_retrieve_responses(out, "C-GET RSP")
    assert responses, "no C-GET response:\n" + out[-3000:]
    failed = re.findall(r"\(0008,0058\) UI \[([^\]]*)\]", out)
    return RetrieveResult(responses[-1][0], responses[:-1], responses[-1][1],
                          failed[-1].split("\\") if failed else [], None, out)


def pyn_retrieve(op, port, model, level, keys, destination=None, calling_ae="PYNETDICOM", pairs=()):
    """C-MOVE (to `destination`) or C-GET (accepting the C-STOREs on the contexts `pairs`, one per
    (SOP class, transfer syntax), SCP role). Returns (RetrieveResult, {uid: (ts, dataset bytes)})."""
    from pynetdicom import build_role, evt

    sop = MODELS[model][op]
    ae = pyn_ae(calling_ae, sop)
    for cls, ts in pairs:
        ae.add_requested_context(cls, [ts])
    roles = [build_role(c, scp_role=True) for c in sorted({c for c, _ in pairs})]
    received = {}

    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        assert uid not in received, "%s sent twice" % uid
        received[uid] = (str(event.context.transfer_syntax), event.request.DataSet.getvalue())
        return 0x0000

    assoc = ae.associate("127.0.0.1", port, ae_title="BRIDGE", ext_neg=roles or None,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established, "pynetdicom: no association with the bridge as %s" % calling_ae
    ds = build_identifier(level, keys, charset=None)
    pending, final, counts, failed, detail = [], None, None, [], None
    try:
        responses = (assoc.send_c_move(ds, destination, sop) if op == "move" else assoc.send_c_get(ds, sop))
        for status, ident in responses:
            assert status, "pynetdicom: no response (connection lost or timed out)"
            c = {n: status.get("NumberOf%sSuboperations" % n) for n in COUNT_NAMES}
            if status.Status == 0xFF00:
                pending.append((status.Status, c))
            else:
                final, counts = status.Status, c
                detail = str(status.get("ErrorComment", "")) or None
                if ident is not None and "FailedSOPInstanceUIDList" in ident:
                    v = ident.FailedSOPInstanceUIDList
                    failed = [str(x) for x in (v if isinstance(v, MultiValue) else [v]) if str(x)]
    finally:
        assoc.release()
    return RetrieveResult(final, pending, counts, failed, detail, None), received


def storescp_received(scp):
    """{SOP Instance UID: (transfer syntax, dataset bytes)} of what a storescp wrote."""
    return files_received(scp.outdir)


def files_received(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        info = part10.read(os.path.join(folder, name))
        uid = info["media_storage_sop_instance_uid"]
        assert uid not in out, "%s received twice" % uid
        out[uid] = (info["transfer_syntax_uid"], info["dataset"])
    return out


def assert_received_as_stored(qr, received, expected_uids):
    """Every expected instance arrived once, in the transfer syntax it is stored in, with the
    dataset bytes the bridge stored."""
    assert set(received) == set(expected_uids), "missing %s; unexpected %s" % (
        sorted(set(expected_uids) - set(received)), sorted(set(received) - set(expected_uids)))
    for uid, (ts, data) in received.items():
        stored = qr.stored[uid]
        assert ts == stored["transfer_syntax_uid"], "%s arrived in %s, stored in %s" % (uid, ts, stored["transfer_syntax_uid"])
        assert data == stored["dataset"], "%s (%s): dataset not as stored:\n%s" % (
            uid, ts, part10.describe_difference(stored["dataset"], data, "stored", "received"))


def assert_success_counts(result, n):
    assert result.final == 0x0000, "final status %04X (%s)" % (result.final, result.detail)
    assert result.counts["Completed"] == n and result.counts["Failed"] == 0 and result.counts["Warning"] == 0, result.counts
    assert result.counts["Remaining"] in (None, 0)
    assert result.failed_uids == []
    # One Pending response per sub-operation but the last, counting down.
    assert [c["Remaining"] for _, c in result.pending] == list(range(n - 1, 0, -1)), result.pending
    assert [c["Completed"] for _, c in result.pending] == list(range(1, n)), result.pending


@pytest.fixture
def destination(qr, storescp_factory):
    """A storescp (bit-preserving, every transfer syntax), known to the bridge as STORESCP."""
    scp = storescp_factory(ae_title="STORESCP")
    qr.add_destination("STORESCP", scp.port)
    return scp


@pytest.fixture(scope="module")
def node2(qr, module_bridge_factory):
    """A second dicom-bridge, known to the first as move destination NODE2."""
    b = module_bridge_factory(ae_title="NODE2", known_aes=("BRIDGE", "ORTHANC"))
    qr.add_destination("NODE2", b.port)
    return b


def node_received(node, uids):
    out = {}
    for uid in uids:
        rows = node.instances(uid)
        if rows:
            assert len(rows) == 1
            info = part10.read(node.stored_path(rows[0]))
            out[uid] = (info["transfer_syntax_uid"], info["dataset"])
    return out


def small_study_uids(qr, names=None):
    return [qr.ref.small(n)["StudyInstanceUID"] for n in (names or sorted(
        r["_small"] for r in qr.ref.records if "_small" in r))]


def test_move_movescu_to_storescp(qr, destination):
    study = st(qr.ref, 0)["StudyInstanceUID"]
    k = {"StudyInstanceUID": study}
    expected = qr.ref.retrieve("STUDY", k)
    assert len(expected) == 6 and len({qr.stored[u]["transfer_syntax_uid"] for u in expected}) == 4
    result = movescu(qr.port, "study", "STUDY", k, "STORESCP")
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, storescp_received(destination), expected)


MOVE_CASES = [
    ("patient-root-patient", "patient", "PATIENT", lambda r: {"PatientID": mixed_pid(1)}),
    ("patient-root-study", "patient", "STUDY", lambda r: {"PatientID": mixed_pid(4),
                                                          "StudyInstanceUID": st(r, 4, 1)["StudyInstanceUID"]}),
    ("study-root-series", "study", "SERIES", lambda r: {"StudyInstanceUID": se(r, 2, 0, 1)["StudyInstanceUID"],
                                                        "SeriesInstanceUID": se(r, 2, 0, 1)["SeriesInstanceUID"]}),
    ("study-root-series-list", "study", "SERIES", lambda r: {
        "StudyInstanceUID": st(r, 3)["StudyInstanceUID"],
        "SeriesInstanceUID": se(r, 3, 0, 0)["SeriesInstanceUID"] + "\\" + se(r, 3, 0, 2)["SeriesInstanceUID"]}),
    ("study-root-image-list", "study", "IMAGE", lambda r: {
        "StudyInstanceUID": se(r, 0, 1, 1)["StudyInstanceUID"], "SeriesInstanceUID": se(r, 0, 1, 1)["SeriesInstanceUID"],
        "SOPInstanceUID": "\\".join(i["SOPInstanceUID"] for i in r.instances(se(r, 0, 1, 1)["SeriesInstanceUID"]))}),
    ("patient-root-image", "patient", "IMAGE", lambda r: {
        "PatientID": mixed_pid(3), "StudyInstanceUID": se(r, 3, 1, 0)["StudyInstanceUID"],
        "SeriesInstanceUID": se(r, 3, 1, 0)["SeriesInstanceUID"],
        "SOPInstanceUID": r.instances(se(r, 3, 1, 0)["SeriesInstanceUID"])[1]["SOPInstanceUID"]}),
    ("every-transfer-syntax", "study", "STUDY", lambda r: {"StudyInstanceUID": "\\".join(sorted(
        x["StudyInstanceUID"] for x in r.records if "_small" in x))}),
]


@pytest.mark.parametrize("case", MOVE_CASES, ids=[c[0] for c in MOVE_CASES])
def test_move_pynetdicom_to_storescp(qr, destination, case):
    _, model, level, make_keys = case
    k = make_keys(qr.ref)
    expected = qr.ref.retrieve(level, k)
    assert expected
    result, _ = pyn_retrieve("move", qr.port, model, level, k, destination="STORESCP")
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, storescp_received(destination), expected)


def test_move_to_second_bridge(qr, node2):
    """movescu and pynetdicom move to another dicom-bridge: it stores what it receives bit for bit."""
    k = {"PatientID": mixed_pid(3)}
    expected = qr.ref.retrieve("PATIENT", k)
    result = movescu(qr.port, "patient", "PATIENT", k, "NODE2")
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, node_received(node2, expected), expected)
    k = {"StudyInstanceUID": "\\".join(small_study_uids(qr))}
    expected = qr.ref.retrieve("STUDY", k)
    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="NODE2")
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, node_received(node2, expected), expected)
    for uid in expected:
        assert node2.instances(uid)[0]["calling_ae_title"] == "BRIDGE"


def test_move_unknown_destination(qr):
    k = {"StudyInstanceUID": st(qr.ref, 1)["StudyInstanceUID"]}
    result = movescu(qr.port, "study", "STUDY", k, "NOWHERE")
    assert result.final == 0xA801 and result.pending == []
    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="NOWHERE")
    assert result.final == 0xA801 and result.pending == []
    assert "unknown move destination" in qr.bridge.log_text()


def test_move_matching_nothing(qr, destination):
    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", {"StudyInstanceUID": "1.2.3.4.5.6.7.8.9"},
                             destination="STORESCP")
    assert result.final == 0x0000 and result.pending == []
    assert result.counts["Completed"] in (0, None) and result.counts["Failed"] in (0, None)
    assert storescp_received(destination) == {}


RETRIEVE_FAILURES = [
    ("missing-level", "study", None, lambda r: {"StudyInstanceUID": st(r, 0)["StudyInstanceUID"]}),
    ("study-uid-wildcard", "study", "STUDY", lambda r: {"StudyInstanceUID": "*"}),
    ("study-uid-missing", "study", "STUDY", lambda r: {"PatientID": mixed_pid(0)}),
    ("series-uid-empty", "study", "SERIES", lambda r: {"StudyInstanceUID": st(r, 0)["StudyInstanceUID"],
                                                       "SeriesInstanceUID": ""}),
    ("series-without-study", "study", "SERIES", lambda r: {"SeriesInstanceUID": se(r, 0)["SeriesInstanceUID"]}),
    ("image-without-series", "study", "IMAGE", lambda r: {"StudyInstanceUID": st(r, 0)["StudyInstanceUID"],
                                                          "SOPInstanceUID": r.instances(se(r, 0)["SeriesInstanceUID"])[0]["SOPInstanceUID"]}),
    ("patient-level-in-study-root", "study", "PATIENT", lambda r: {"PatientID": mixed_pid(0)}),
    ("patient-id-list", "patient", "PATIENT", lambda r: {"PatientID": mixed_pid(0) + "\\" + mixed_pid(1)}),
    ("patient-id-wildcard", "patient", "PATIENT", lambda r: {"PatientID": "DBT0011-0000*"}),
    ("patient-root-study-without-patient-id", "patient", "STUDY",
     lambda r: {"StudyInstanceUID": st(r, 0)["StudyInstanceUID"]}),
]


@pytest.mark.parametrize("op", ["move", "get"])
@pytest.mark.parametrize("case", RETRIEVE_FAILURES, ids=[c[0] for c in RETRIEVE_FAILURES])
def test_retrieve_bad_identifier_a900(qr, destination, op, case):
    """PS3.4 C.4.2.2.1 / C.4.3.2.1 (baseline): one value of each unique key above the level, one UID
    or a list at the level, a single Patient ID; anything else A900 before any sub-operation."""
    _, model, level, make_keys = case
    result, received = pyn_retrieve(op, qr.port, model, level, make_keys(qr.ref), destination="STORESCP",
                                    pairs=qr.pairs())
    assert result.final == 0xA900, "final status %04X (%s)" % (result.final, result.detail)
    assert result.pending == [] and received == {} and storescp_received(destination) == {}
    assert result.detail


def test_retrieve_permissions(qr, storescp_factory, node2):
    """`ae add --no-retrieve`: C-MOVE and C-GET refused 0124 (C-FIND allowed); `--move-to ONLYHERE`:
    moves elsewhere refused 0124; `--no-query`: C-FIND refused but C-GET allowed."""
    scp = storescp_factory(ae_title="ONLYHERE")
    qr.add_destination("ONLYHERE", scp.port)
    k = {"StudyInstanceUID": st(qr.ref, 2)["StudyInstanceUID"]}
    expected = qr.ref.retrieve("STUDY", k)
    result = movescu(qr.port, "study", "STUDY", k, "ONLYHERE", calling_ae="NORETRIEVE")
    assert result.final == 0x0124 and result.pending == []
    result, received = pyn_retrieve("get", qr.port, "study", "STUDY", k, calling_ae="NORETRIEVE", pairs=qr.pairs())
    assert result.final == 0x0124 and received == {}
    assert pyn_find(qr.port, "study", "STUDY", {"StudyInstanceUID": ""}, calling_ae="NORETRIEVE").final == 0
    assert storescp_received(scp) == {}

    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="NODE2", calling_ae="MOVELIMITED")
    assert result.final == 0x0124 and result.pending == []
    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="ONLYHERE", calling_ae="MOVELIMITED")
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, storescp_received(scp), expected)

    result, received = pyn_retrieve("get", qr.port, "study", "STUDY", k, calling_ae="NOQUERY", pairs=qr.pairs())
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, received, expected)
    log = qr.bridge.log_text()
    assert "C-MOVE refused: the calling AE may not move to this destination" in log
    assert "not allowed to" in log


GET_CASES_EXPLICIT = [
    ("study", "study", "STUDY", lambda r: {"StudyInstanceUID": r.study(EXPLICIT_PID, 0)["StudyInstanceUID"]}),
    ("series", "study", "SERIES", lambda r: {
        "StudyInstanceUID": r.study(EXPLICIT_PID, 0)["StudyInstanceUID"],
        "SeriesInstanceUID": r.series(r.study(EXPLICIT_PID, 0)["StudyInstanceUID"])[1]["SeriesInstanceUID"]}),
    ("image-uid-list", "study", "IMAGE", lambda r: get_image_list(r)),
    ("patient-root-patient", "patient", "PATIENT", lambda r: {"PatientID": EXPLICIT_PID}),
]


def get_image_list(r):
    study = r.study(EXPLICIT_PID, 0)["StudyInstanceUID"]
    series = r.series(study)[0]["SeriesInstanceUID"]
    images = r.instances(series)
    return {"StudyInstanceUID": study, "SeriesInstanceUID": series,
            "SOPInstanceUID": images[0]["SOPInstanceUID"] + "\\" + images[2]["SOPInstanceUID"]}


@pytest.mark.parametrize("case", GET_CASES_EXPLICIT, ids=[c[0] for c in GET_CASES_EXPLICIT])
def test_get_getscu(qr, workdir, case):
    """getscu (+B: written as received) at every level; its storage contexts offer Explicit VR LE
    first, the syntax of this corpus, so what arrives is what is stored."""
    _, model, level, make_keys = case
    k = make_keys(qr.ref)
    expected = qr.ref.retrieve(level, k)
    assert expected and all(qr.stored[u]["transfer_syntax_uid"] == EXPLICIT_LE for u in expected)
    out = os.path.join(str(workdir), "got")
    result = getscu(qr.port, model, level, k, out)
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, files_received(out), expected)


GET_CASES = MOVE_CASES + [
    ("explicit-" + c[0], c[1], c[2], c[3]) for c in GET_CASES_EXPLICIT
]


@pytest.mark.parametrize("case", GET_CASES, ids=[c[0] for c in GET_CASES])
def test_get_pynetdicom(qr, case):
    """pynetdicom proposes one context per (SOP class, transfer syntax) with the SCP role: every
    instance comes back on the requester's association in the syntax it is stored in, as stored."""
    _, model, level, make_keys = case
    k = make_keys(qr.ref)
    expected = qr.ref.retrieve(level, k)
    result, received = pyn_retrieve("get", qr.port, model, level, k, pairs=qr.pairs(expected))
    assert_success_counts(result, len(expected))
    assert_received_as_stored(qr, received, expected)


def test_get_without_context_for_some_sop_class(qr):
    """A C-GET whose requester offered no storage context for SC: those sub-operations fail, the
    others complete; final B000 with the failed UIDs in (0008,0058)."""
    k = {"StudyInstanceUID": st(qr.ref, 0)["StudyInstanceUID"]}
    expected = qr.ref.retrieve("STUDY", k)
    sc = {u for u in expected if qr.stored[u]["media_storage_sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.7"}
    assert sc and sc != expected
    pairs = [p for p in qr.pairs(expected) if p[0] != "1.2.840.10008.5.1.4.1.1.7"]
    result, received = pyn_retrieve("get", qr.port, "study", "STUDY", k, pairs=pairs)
    assert result.final == 0xB000, "final status %04X" % result.final
    assert result.counts["Completed"] == len(expected - sc) and result.counts["Failed"] == len(sc)
    assert sorted(result.failed_uids) == sorted(sc)
    assert_received_as_stored(qr, received, expected - sc)


# == Transfer syntax fallback ===============================================================================

STORAGE_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.1",
                   "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.7")


@pytest.fixture
def explicit_only_destination(qr, tmp_path):
    """DCMTK's storescp with an association profile that accepts Explicit VR Little Endian only,
    known to the bridge as LEONLY."""
    cfg = tmp_path / "le-only.cfg"
    lines = ["[[TransferSyntaxes]]", "[LE]", "TransferSyntax1 = " + EXPLICIT_LE, "", "[[PresentationContexts]]",
             "[LEContexts]"]
    lines += ["PresentationContext%d = %s\\LE" % (i + 1, c) for i, c in enumerate(STORAGE_CLASSES)]
    lines += ["", "[[Profiles]]", "[LEOnly]", "PresentationContexts = LEContexts", ""]
    cfg.write_text("\n".join(lines))
    outdir = tmp_path / "le-only"
    outdir.mkdir()
    scp = harness.StoreSCP(str(outdir), harness.free_port(), ae_title="LEONLY", log_path=str(tmp_path / "le-only.log"))
    scp._start([harness.STORESCP, "--bit-preserving", "-xf", str(cfg), "LEOnly", "-aet", "LEONLY", "-od", str(outdir),
                "-fe", ".dcm", str(scp.port)])
    try:
        harness.wait_for_port(scp.port, proc=scp.proc)
        qr.add_destination("LEONLY", scp.port)
        yield scp
    finally:
        scp.stop()


def decoded_pixels(path, workdir):
    """The pixel data of a file as numpy decodes it with pydicom; JPEG is first decompressed by
    DCMTK's dcmdjpeg (pydicom has no JPEG Lossless decoder without extra plugins)."""
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        out = os.path.join(str(workdir), "dcmdjpeg-" + os.path.basename(path))
        harness.run([DCMDJPEG, path, out], check=True)
        ds = pydicom.dcmread(out)
        assert ds.file_meta.TransferSyntaxUID in UNCOMPRESSED
    return ds.pixel_array


def same_attributes(a, b):
    """Every element but Pixel Data (and File Meta) has the same value."""
    skip = {0x7FE00010}
    ka = {e.tag for e in a if e.tag not in skip}
    kb = {e.tag for e in b if e.tag not in skip}
    assert ka == kb, "elements differ: %s / %s" % (sorted(map(str, ka - kb)), sorted(map(str, kb - ka)))
    for t in ka:
        assert a[t].value == b[t].value, "%s: %r != %r" % (t, a[t].value, b[t].value)


LOSSLESS = ["ct_jpeg_lossless.dcm", "ct_rle.dcm", "us_rle.dcm"]


def test_move_converts_uncompressed_for_explicit_only_destination(qr, explicit_only_destination):
    """Implicit VR, big endian and deflated instances moved to a destination that takes only
    Explicit VR LE arrive in Explicit VR LE with the same attributes and pixels."""
    k = {"StudyInstanceUID": st(qr.ref, 0)["StudyInstanceUID"]}
    expected = qr.ref.retrieve("STUDY", k)
    assert {qr.stored[u]["transfer_syntax_uid"] for u in expected} == UNCOMPRESSED | {"1.2.840.10008.1.2.1.99"}
    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="LEONLY")
    assert_success_counts(result, len(expected))
    received = {part10.read(p)["media_storage_sop_instance_uid"]: p for p in explicit_only_destination.received()}
    assert set(received) == expected
    for uid, path in received.items():
        got = pydicom.dcmread(path)
        assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
        stored = pydicom.dcmread(qr.bridge.stored_path(qr.stored[uid]["row"]))
        same_attributes(got, stored)
        assert (got.pixel_array == stored.pixel_array).all()
        if stored.file_meta.TransferSyntaxUID == EXPLICIT_LE:
            assert part10.read(path)["dataset"] == qr.stored[uid]["dataset"]


def test_move_decompresses_for_explicit_only_destination(qr, explicit_only_destination, workdir):
    """JPEG Lossless and RLE instances moved to a destination that takes only Explicit VR LE arrive
    decompressed: same pixels after decoding, same attributes."""
    k = {"StudyInstanceUID": "\\".join(small_study_uids(qr, LOSSLESS))}
    expected = qr.ref.retrieve("STUDY", k)
    assert len(expected) == 3
    result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="LEONLY")
    assert_success_counts(result, 3)
    received = {part10.read(p)["media_storage_sop_instance_uid"]: p for p in explicit_only_destination.received()}
    assert set(received) == expected
    for name in LOSSLESS:
        original = os.path.join(harness.TESTDATA, name)
        uid = qr.ref.small(name)["SOPInstanceUID"]
        got = pydicom.dcmread(received[uid])
        assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert (decoded_pixels(received[uid], workdir) == decoded_pixels(original, workdir)).all(), name
        same_attributes(got, pydicom.dcmread(original))


def test_move_jpeg2000_to_explicit_only_destination_fails_sub_operation(qr, explicit_only_destination):
    """DCMTK 3.6.7 has no JPEG 2000 decoder: the instance cannot be sent to a destination that
    refuses JPEG 2000. Counted as failed, its UID in (0008,0058); A702 as nothing was sent."""
    j2k = qr.ref.small("ct_j2k.dcm")
    k = {"StudyInstanceUID": j2k["StudyInstanceUID"]}
    for tool in ("pynetdicom", "movescu"):
        if tool == "movescu":
            result = movescu(qr.port, "study", "STUDY", k, "LEONLY")
        else:
            result, _ = pyn_retrieve("move", qr.port, "study", "STUDY", k, destination="LEONLY")
        assert result.final == 0xA702, "final status %04X, expected A702" % result.final
        assert result.counts["Completed"] == 0 and result.counts["Failed"] == 1, result.counts
        assert result.failed_uids == [j2k["SOPInstanceUID"]]
    assert explicit_only_destination.received() == []
    assert "C-MOVE sub-operation did not succeed" in qr.bridge.log_text()


def test_move_jpeg2000_with_rle_to_explicit_only_destination_b000(qr, explicit_only_destination):
    """JPEG 2000 fails, RLE is decompressed and completes: B000, only the JPEG 2000 UID in (0008,0058)."""
    j2k, rle = qr.ref.small("ct_j2k.dcm"), qr.ref.small("ct_rle.dcm")
    k = {"StudyInstanceUID": j2k["StudyInstanceUID"] + "\\" + rle["StudyInstanceUID"]}
    result = movescu(qr.port, "study", "STUDY", k, "LEONLY")
    assert result.final == 0xB000, "final status %04X, expected B000" % result.final
    assert result.counts["Completed"] == 1 and result.counts["Failed"] == 1, result.counts
    assert result.failed_uids == [j2k["SOPInstanceUID"]]
    got = [part10.read(p) for p in explicit_only_destination.received()]
    assert [g["media_storage_sop_instance_uid"] for g in got] == [rle["SOPInstanceUID"]]
    assert got[0]["transfer_syntax_uid"] == EXPLICIT_LE


def test_get_decompresses_when_only_explicit_offered(qr, workdir):
    """The same fallback on C-GET: the requester offers Explicit VR LE only."""
    names = LOSSLESS + ["ct_j2k.dcm"]
    k = {"StudyInstanceUID": "\\".join(small_study_uids(qr, names))}
    expected = qr.ref.retrieve("STUDY", k)
    pairs = sorted({(qr.stored[u]["media_storage_sop_class_uid"], EXPLICIT_LE) for u in expected})
    result, received = pyn_retrieve("get", qr.port, "study", "STUDY", k, pairs=pairs)
    j2k = qr.ref.small("ct_j2k.dcm")["SOPInstanceUID"]
    assert result.final == 0xB000 and result.counts["Completed"] == 3 and result.counts["Failed"] == 1, \
        (result.final, result.counts)
    assert result.failed_uids == [j2k]
    assert set(received) == expected - {j2k}
    for name in LOSSLESS:
        uid = qr.ref.small(name)["SOPInstanceUID"]
        ts, data = received[uid]
        assert ts == EXPLICIT_LE
        ds = dataset_from_bytes(data, ts)
        original = os.path.join(harness.TESTDATA, name)
        assert (ds.pixel_array == decoded_pixels(original, workdir)).all(), name
        same_attributes(ds, pydicom.dcmread(original))


def dataset_from_bytes(data, ts):
    """A pydicom Dataset of dataset bytes received in transfer syntax `ts` (not deflated)."""
    from io import BytesIO

    from pydicom.dataset import FileMetaDataset
    from pydicom.filereader import read_dataset

    uid = pydicom.uid.UID(ts)
    ds = read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return ds


# == Orthanc as a Query/Retrieve SCU of the bridge, and as a peer of the CLI ==================================

class Utf8Orthanc(harness.Orthanc):
    """Orthanc keeps C-FIND answers in its DefaultEncoding (Latin1 unless told): Greek or Japanese
    names would come out of /queries/{id}/answers as '^'. UTF-8 keeps every name."""

    def config(self):
        return dict(super().config(), DefaultEncoding="Utf8")


@pytest.fixture(scope="module")
def orthanc(request, qr, node2, orthanc_available, tmp_path_factory):
    """An Orthanc that knows the bridge (BRIDGE) and NODE2 as modalities; the bridge knows it as
    move destination ORTHANC."""
    o = Utf8Orthanc(str(tmp_path_factory.mktemp("orthanc")),
                        modalities={"BRIDGE": ["BRIDGE", "127.0.0.1", qr.port],
                                    "NODE2": ["NODE2", "127.0.0.1", node2.port]})
    failed_before = request.session.testsfailed
    o.start()
    qr.add_destination("ORTHANC", o.dicom_port)
    yield o
    o.stop()
    if request.session.testsfailed > failed_before:
        o.dump_log()


def orthanc_query(o, level, query):
    """POST /modalities/BRIDGE/query; returns (query id, [answer contents, simplified])."""
    q = o.post("/modalities/BRIDGE/query", {"Level": level, "Query": query})
    answers = o.get("/queries/%s/answers" % q["ID"])
    return q["ID"], [o.get("/queries/%s/answers/%s/content?simplify" % (q["ID"], a)) for a in answers]


DEFLATED = "1.2.840.10008.1.2.1.99"


def orthanc_instance_dataset(o, sop_instance_uid):
    found = [x for x in o.post("/tools/lookup", sop_instance_uid.encode(), content_type="text/plain")
             if x["Type"] == "Instance"]
    if not found:
        return None
    info = part10.parse(o.get("/instances/%s/file" % found[0]["ID"]))
    return info["transfer_syntax_uid"], info["dataset"]


def inflated(ts, data):
    """Deflated dataset bytes inflated (what follows the end of the deflate stream dropped)."""
    if ts != DEFLATED:
        return data
    d = zlib.decompressobj(-15)
    out = d.decompress(data)
    assert d.eof, "truncated deflate stream"
    return out


def assert_orthanc_has_as_stored(qr, o, uids):
    """Orthanc's copies have the bridge's dataset bytes. Orthanc writes a received deflated dataset
    anew (the same inflated bytes, deflated again and padded with NULs; storescp --bit-preserving
    shows the bridge sends the stored bytes: test_move_movescu_to_storescp), so deflated datasets
    are compared inflated."""
    got = {u: orthanc_instance_dataset(o, u) for u in uids}
    assert all(got.values()), "not in Orthanc: %s" % sorted(u for u, v in got.items() if not v)
    for uid, (ts, data) in got.items():
        stored = qr.stored[uid]
        assert ts == stored["transfer_syntax_uid"]
        assert inflated(ts, data) == inflated(ts, stored["dataset"]), "%s (%s): dataset not as stored:\n%s" % (
            uid, ts, part10.describe_difference(inflated(ts, stored["dataset"]), inflated(ts, data), "stored", "Orthanc"))


ORTHANC_QUERIES = [
    ("study-pn-wildcard", "Study", "STUDY", {"PatientName": "doe*", "PatientID": "", "StudyDate": "",
                                             "ModalitiesInStudy": "", "StudyInstanceUID": ""}),
    ("study-pn-nonascii", "Study", "STUDY", {"PatientName": "Müller*", "PatientID": "", "StudyInstanceUID": "",
                                             "StudyDescription": ""}),
    ("study-date-range", "Study", "STUDY", {"StudyDate": "20200101-20221231", "StudyInstanceUID": "",
                                            "AccessionNumber": "", "NumberOfStudyRelatedInstances": ""}),
    ("study-modalities", "Study", "STUDY", {"ModalitiesInStudy": "MR", "StudyInstanceUID": "", "PatientName": ""}),
    ("patient", "Patient", "PATIENT", {"PatientID": "DBTSMALL-0*", "PatientName": "", "PatientBirthDate": ""}),
]


@pytest.mark.orthanc
@pytest.mark.parametrize("case", ORTHANC_QUERIES, ids=[c[0] for c in ORTHANC_QUERIES])
def test_orthanc_queries_bridge(qr, orthanc, case):
    """Orthanc's /modalities/{id}/query (its C-FIND SCU, Latin-1 by default) gets the reference's answers."""
    _, level, dicom_level, query = case
    _, answers = orthanc_query(orthanc, level, query)
    expected = qr.ref.find(dicom_level, query)
    assert expected
    uid_kw = UNIQUE[dicom_level]
    got = {a[uid_kw]: a for a in answers}
    assert len(got) == len(answers) and set(got) == set(expected), (sorted(got), sorted(expected))
    for uid, want in expected.items():
        for kw, value in want.items():
            assert got[uid].get(kw, "") == value, "%s of %s: Orthanc got %r, expected %r" % (kw, uid, got[uid].get(kw), value)


@pytest.mark.orthanc
def test_orthanc_queries_series_and_instances(qr, orthanc):
    study = st(qr.ref, 3)["StudyInstanceUID"]
    _, answers = orthanc_query(orthanc, "Series", {"StudyInstanceUID": study, "SeriesInstanceUID": "",
                                                   "Modality": "", "SeriesDescription": ""})
    expected = qr.ref.find("SERIES", {"StudyInstanceUID": study, "SeriesInstanceUID": "", "Modality": "",
                                      "SeriesDescription": ""})
    assert {a["SeriesInstanceUID"]: (a["Modality"], a["SeriesDescription"]) for a in answers} == \
        {u: (e["Modality"], e["SeriesDescription"]) for u, e in expected.items()}
    series = se(qr.ref, 3)["SeriesInstanceUID"]
    _, answers = orthanc_query(orthanc, "Instance", {"StudyInstanceUID": study, "SeriesInstanceUID": series,
                                                     "SOPInstanceUID": "", "InstanceNumber": ""})
    assert sorted((a["SOPInstanceUID"], a["InstanceNumber"]) for a in answers) == \
        sorted((i["SOPInstanceUID"], i["InstanceNumber"]) for i in qr.ref.instances(series))


@pytest.mark.orthanc
def test_orthanc_retrieves_with_c_move(qr, orthanc):
    """/queries/{id}/retrieve and /modalities/{id}/move with Orthanc's own AE as target: the bridge
    C-STOREs into Orthanc, whose copies have the dataset bytes the bridge stored."""
    qid, answers = orthanc_query(orthanc, "Study", {"PatientID": mixed_pid(1), "StudyInstanceUID": ""})
    assert len(answers) == 2
    orthanc.post("/queries/%s/retrieve" % qid, {"TargetAet": orthanc.ae_title, "Synchronous": True}, timeout=300)
    expected = qr.ref.retrieve("PATIENT", {"PatientID": mixed_pid(1)})
    assert DEFLATED in {qr.stored[u]["transfer_syntax_uid"] for u in expected}
    assert_orthanc_has_as_stored(qr, orthanc, expected)

    s = se(qr.ref, 4, 1, 1)
    orthanc.post("/modalities/BRIDGE/move", {
        "Level": "Series", "TargetAet": orthanc.ae_title, "Synchronous": True,
        "Resources": [{"StudyInstanceUID": s["StudyInstanceUID"], "SeriesInstanceUID": s["SeriesInstanceUID"]}]},
        timeout=300)
    expected = qr.ref.retrieve("SERIES", {"SeriesInstanceUID": s["SeriesInstanceUID"]})
    assert_orthanc_has_as_stored(qr, orthanc, expected)
    assert "destination=ORTHANC" in qr.bridge.log_text()


# == The CLI: find, get, move ====================================================================================

def cli(qr, *args, check=True):
    return qr.bridge.cli(*[str(a) for a in args], home=False, check=check)


CLI_FIND_CASES = [
    ("study-pn", "study", "STUDY", {"PatientName": "doe*", "ModalitiesInStudy": ""}),
    ("study-date-range", "study", "STUDY", {"StudyDate": "20200101-20221231", "ReferringPhysicianName": ""}),
    ("study-nonascii", "study", "STUDY", {"PatientName": "*ü*", "StudyDescription": ""}),
    ("series", "study", "SERIES", {"StudyInstanceUID": None, "Modality": "", "BodyPartExamined": "",
                                   "NumberOfSeriesRelatedInstances": ""}),
    ("patient", "patient", "PATIENT", {"PatientID": "DBT0011-*", "NumberOfPatientRelatedStudies": ""}),
]


@pytest.mark.parametrize("case", CLI_FIND_CASES, ids=[c[0] for c in CLI_FIND_CASES])
def test_cli_find_json_same_as_findscu(qr, workdir, case):
    _, model, level, k = case
    k = dict(k)
    if "StudyInstanceUID" in k and k["StudyInstanceUID"] is None:
        k["StudyInstanceUID"] = st(qr.ref, 2)["StudyInstanceUID"]
    args = ["find", "127.0.0.1", qr.port, "--called-ae", "BRIDGE", "--calling-ae", "CLI", "--model", model,
            "--level", level, "--json"]
    for kw, v in k.items():
        args += ["-k", "%s=%s" % (kw, v) if v else kw]
    rows = json.loads(cli(qr, *args).stdout)
    assert rows, "no match"
    columns = set().union(*(r.keys() for r in rows))
    assert set(k) <= columns and all(set(r) == columns for r in rows)
    full = {c: k.get(c, "") for c in columns}
    result = findscu(qr.port, model, level, full, workdir)
    assert result.final == 0
    uid_kw = UNIQUE[level]
    by_findscu = {element_text(ds, uid_kw): {c: element_text(ds, c) for c in columns} for ds in result.answers}
    assert {r[uid_kw]: r for r in rows} == by_findscu
    assert by_findscu == qr.ref.find(level, full)


def test_cli_get_from_bridge(qr, workdir):
    study = qr.ref.study(EXPLICIT_PID, 0)["StudyInstanceUID"]
    out = os.path.join(str(workdir), "got")
    r = cli(qr, "get", "127.0.0.1", qr.port, "--called-ae", "BRIDGE", "--calling-ae", "CLI", "--out", out,
            "--study", study, "--json")
    summary = json.loads(r.stdout)
    expected = qr.ref.retrieve("STUDY", {"StudyInstanceUID": study})
    assert summary["completed"] == len(expected) and summary["failed"] == 0 and summary["warning"] == 0
    assert summary["status"].startswith("0000")
    assert_received_as_stored(qr, files_received(out), expected)
    # Series level with -k, Patient Root.
    s = qr.ref.series(study)[1]
    out = os.path.join(str(workdir), "got-series")
    r = cli(qr, "get", "127.0.0.1", qr.port, "--called-ae", "BRIDGE", "--calling-ae", "CLI", "--out", out,
            "--model", "patient", "--level", "SERIES", "--patient", EXPLICIT_PID, "--study", study,
            "-k", "SeriesInstanceUID=" + s["SeriesInstanceUID"], "--json")
    expected = qr.ref.retrieve("SERIES", {"SeriesInstanceUID": s["SeriesInstanceUID"]})
    assert json.loads(r.stdout)["completed"] == len(expected) == 3
    assert_received_as_stored(qr, files_received(out), expected)


def test_cli_move_from_bridge(qr, node2):
    study = st(qr.ref, 4)["StudyInstanceUID"]
    r = cli(qr, "move", "127.0.0.1", qr.port, "--called-ae", "BRIDGE", "--calling-ae", "CLI",
            "--destination", "NODE2", "--study", study, "--json")
    summary = json.loads(r.stdout)
    expected = qr.ref.retrieve("STUDY", {"StudyInstanceUID": study})
    assert summary["completed"] == len(expected) == 6 and summary["failed"] == 0
    assert_received_as_stored(qr, node_received(node2, expected), expected)
    r = cli(qr, "move", "127.0.0.1", qr.port, "--called-ae", "BRIDGE", "--calling-ae", "CLI",
            "--destination", "NOWHERE", "--study", study, "--json", check=False)
    assert r.returncode != 0 and "A801" in json.loads(r.stdout)["status"]


@pytest.mark.orthanc
def test_cli_against_orthanc(qr, orthanc, node2, workdir):
    """The CLI's find, get and move with Orthanc as the SCP (the CLI calls as BRIDGE, a modality
    Orthanc knows). Orthanc holds the Explicit VR LE study, uploaded from the bridge's store."""
    study = qr.ref.study(EXPLICIT_PID, 0)["StudyInstanceUID"]
    expected = qr.ref.retrieve("STUDY", {"StudyInstanceUID": study})
    for uid in expected:
        with open(qr.bridge.stored_path(qr.stored[uid]["row"]), "rb") as f:
            orthanc.post("/instances", f.read(), content_type="application/dicom")
    peer = ["127.0.0.1", orthanc.dicom_port, "--called-ae", orthanc.ae_title, "--calling-ae", "BRIDGE"]

    rows = json.loads(cli(qr, "find", *peer, "--level", "SERIES", "--study", study, "-k", "Modality",
                          "-k", "SeriesNumber", "--json").stdout)
    want = qr.ref.find("SERIES", {"StudyInstanceUID": study, "SeriesInstanceUID": "", "Modality": "",
                                  "SeriesNumber": ""})
    assert {r["SeriesInstanceUID"]: (r["Modality"], r["SeriesNumber"]) for r in rows} == \
        {u: (e["Modality"], e["SeriesNumber"]) for u, e in want.items()}

    out = os.path.join(str(workdir), "from-orthanc")
    summary = json.loads(cli(qr, "get", *peer, "--out", out, "--study", study, "--json").stdout)
    assert summary["completed"] == len(expected) and summary["failed"] == 0
    assert_received_as_stored(qr, files_received(out), expected)

    s = qr.ref.series(study)[0]
    summary = json.loads(cli(qr, "move", *peer, "--destination", "NODE2", "--level", "SERIES", "--study", study,
                             "-k", "SeriesInstanceUID=" + s["SeriesInstanceUID"], "--json").stdout)
    moved = qr.ref.retrieve("SERIES", {"SeriesInstanceUID": s["SeriesInstanceUID"]})
    assert summary["completed"] == len(moved) == 3 and summary["failed"] == 0
    assert_received_as_stored(qr, node_received(node2, moved), moved)
    for uid in moved:
        assert node2.instances(uid)[0]["calling_ae_title"] == orthanc.ae_title


# == C-CANCEL of C-MOVE and C-GET, made deterministic ======================================================
#
# The bridge looks for a C-CANCEL between two sub-operations (and, for a C-GET, while it waits for a
# sub-operation's C-STORE response on the same association). The tests hold the retrieval at its
# CANCEL_AT-th sub-operation until the C-CANCEL is in the bridge's socket, so the outcome is fixed:
# that sub-operation completes, none after it starts, and the final response is Cancel (FE00) with
# Completed = CANCEL_AT and Remaining = the rest.

CANCEL_AT = 2
C_CANCEL_COMMAND = b"\x00\x00\x00\x01\x02\x00\x00\x00\xff\x0f"  # (0000,0100) US 0FFF, Implicit VR LE


def cancel_delivery_watch(assoc):
    """An Event set once pynetdicom has written a C-CANCEL-RQ to the association's socket and the
    bridge's TCP stack has acknowledged every byte of it (SIOCOUTQ 0): it is then in the bridge's
    receive buffer, where its next look for a C-CANCEL finds it."""
    import fcntl
    import struct
    import termios
    import threading
    import time
    from pynetdicom import evt

    written, delivered = threading.Event(), threading.Event()

    def on_sent(event):
        if event.data and event.data[:1] == b"\x04" and C_CANCEL_COMMAND in event.data:
            written.set()

    assoc.bind(evt.EVT_DATA_SENT, on_sent)

    def wait(timeout=60):
        assert written.wait(timeout), "the C-CANCEL-RQ was not written to the socket"
        sock = assoc.dul.socket.socket
        deadline = time.monotonic() + timeout
        while struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0] != 0:
            assert time.monotonic() < deadline, "the C-CANCEL-RQ was not acknowledged by the bridge's TCP"
            time.sleep(0.01)
        delivered.set()

    return wait


def collect_retrieve_responses(responses):
    """(pending [(status, counts)], final status, final counts, Error Comment) of C-MOVE/C-GET responses."""
    pending, final, counts, detail = [], None, None, None
    for status, _ in responses:
        assert status, "pynetdicom: no response (connection lost or timed out)"
        c = {n: status.get("NumberOf%sSuboperations" % n) for n in COUNT_NAMES}
        if status.Status == 0xFF00:
            pending.append((status.Status, c))
        else:
            final, counts = status.Status, c
            detail = str(status.get("ErrorComment", "")) or None
    return pending, final, counts, detail


def assert_cancelled_at(qr, pending, final, counts, received, expected, operation, log_start, pendings=CANCEL_AT):
    """pendings: the Pending responses before the Cancel, one per sub-operation completed before the
    bridge saw the C-CANCEL (a C-GET's CANCEL_AT-th sub-operation is answered by the Cancel itself)."""
    total = len(expected)
    assert final == 0xFE00, "final status %s, expected FE00 (Cancel)" % (final if final is None else "%04X" % final)
    assert counts == {"Remaining": total - CANCEL_AT, "Completed": CANCEL_AT, "Failed": 0, "Warning": 0}, counts
    assert counts["Remaining"] + counts["Completed"] + counts["Failed"] + counts["Warning"] == total
    assert [c["Completed"] for _, c in pending] == list(range(1, pendings + 1)), pending
    assert [c["Remaining"] for _, c in pending] == [total - i for i in range(1, pendings + 1)], pending
    # No sub-operation after the C-CANCEL: exactly CANCEL_AT instances arrived, as stored.
    assert len(received) == CANCEL_AT, "%d instances arrived, expected %d" % (len(received), CANCEL_AT)
    assert set(received) <= set(expected)
    assert_received_as_stored(qr, received, set(received))
    qr.bridge.wait_for_log("%s cancelled" % operation, start=log_start)
    lines = [l for l in qr.bridge.log_text()[log_start:].splitlines() if "%s cancelled" % operation in l]
    assert len(lines) == 1 and "completed=%d " % CANCEL_AT in lines[0] and "remaining=%d " % (total - CANCEL_AT) in lines[0] \
        and "failed=0 " in lines[0], lines


def test_move_cancel_between_sub_operations(qr, tmp_path):
    """C-MOVE to a pynetdicom storage SCP that holds its CANCEL_AT-th C-STORE until the C-CANCEL
    has reached the bridge."""
    import threading
    from pynetdicom import AE, evt

    study = st(qr.ref, 0)["StudyInstanceUID"]
    k = {"StudyInstanceUID": study}
    expected = qr.ref.retrieve("STUDY", k)
    assert len(expected) == 6
    sop = MODELS["study"]["move"]

    received = {}
    held, release, released = threading.Event(), threading.Event(), threading.Event()
    sub_associations = []

    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        assert uid not in received, "%s sent twice" % uid
        received[uid] = (str(event.context.transfer_syntax), event.request.DataSet.getvalue())
        if len(received) == CANCEL_AT:
            held.set()
            release.wait(120)
        return 0x0000

    def on_released(event):
        released.set()

    dest = AE(ae_title="CANCELDEST")
    syntaxes = collections.defaultdict(set)
    for cls, ts in qr.pairs(expected):
        syntaxes[cls].add(ts)
    for cls, tss in sorted(syntaxes.items()):
        dest.add_supported_context(cls, sorted(tss))
    port = harness.free_port()
    server = dest.start_server(("127.0.0.1", port), block=False,
                               evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_RELEASED, on_released),
                                             (evt.EVT_ABORTED, on_released),
                                             (evt.EVT_ESTABLISHED, lambda e: sub_associations.append(e.assoc))])
    try:
        qr.add_destination("CANCELDEST", port)
        ae = pyn_ae("PYNETDICOM", sop)
        assoc = ae.associate("127.0.0.1", qr.port, ae_title="BRIDGE")
        assert assoc.is_established
        wait_delivered = cancel_delivery_watch(assoc)
        log_start = qr.bridge.log_size()
        responses = assoc.send_c_move(build_identifier("STUDY", k, charset=None), "CANCELDEST", sop, msg_id=11)
        canceller_failed = []

        def canceller():
            try:
                assert held.wait(120), "the destination never received its %d-th instance" % CANCEL_AT
                assoc.send_c_cancel(11, query_model=sop)
                wait_delivered()
            except Exception as e:  # reported below
                canceller_failed.append(e)
            finally:
                release.set()

        t = threading.Thread(target=canceller)
        t.start()
        try:
            pending, final, counts, detail = collect_retrieve_responses(responses)
        finally:
            release.set()
            t.join(130)
        assert canceller_failed == [], canceller_failed
        # The bridge has closed its sub-association: nothing more can come.
        assert released.wait(60), "the bridge did not close its association to the destination"
        assert len(sub_associations) == 1
        assert_cancelled_at(qr, pending, final, counts, dict(received), expected, "C-MOVE", log_start)
        # The association still serves: the same C-MOVE, not cancelled, completes.
        received.clear()
        result = collect_retrieve_responses(assoc.send_c_move(build_identifier("STUDY", k, charset=None),
                                                              "CANCELDEST", sop, msg_id=12))
        assert result[1] == 0x0000 and result[2]["Completed"] == len(expected), result
        assert_received_as_stored(qr, received, expected)
        assoc.release()
    finally:
        release.set()
        server.shutdown()


def test_get_cancel_during_a_sub_operation(qr):
    """C-GET whose requester sends the C-CANCEL from its CANCEL_AT-th C-STORE handler, before that
    C-STORE's response: on the one association the bridge reads the C-CANCEL-RQ while it waits for
    the response, then the response (the sub-operation completed), and starts no other."""
    from pynetdicom import build_role, evt

    study = st(qr.ref, 1)["StudyInstanceUID"]
    k = {"StudyInstanceUID": study}
    expected = qr.ref.retrieve("STUDY", k)
    assert len(expected) == 6
    sop = MODELS["study"]["get"]
    pairs = qr.pairs(expected)
    ae = pyn_ae("PYNETDICOM", sop)
    for cls, ts in pairs:
        ae.add_requested_context(cls, [ts])
    roles = [build_role(c, scp_role=True) for c in sorted({c for c, _ in pairs})]
    received = {}
    cancel = {"at": CANCEL_AT}

    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        assert uid not in received, "%s sent twice" % uid
        received[uid] = (str(event.context.transfer_syntax), event.request.DataSet.getvalue())
        if len(received) == cancel["at"]:
            event.assoc.send_c_cancel(21, query_model=sop)
            wait_delivered()  # (the response is queued after it in any case)
        return 0x0000

    assoc = ae.associate("127.0.0.1", qr.port, ae_title="BRIDGE", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    wait_delivered = cancel_delivery_watch(assoc)
    log_start = qr.bridge.log_size()
    try:
        pending, final, counts, _ = collect_retrieve_responses(
            assoc.send_c_get(build_identifier("STUDY", k, charset=None), sop, msg_id=21))
        assert_cancelled_at(qr, pending, final, counts, dict(received), expected, "C-GET", log_start,
                            pendings=CANCEL_AT - 1)
        # The association still serves: the same C-GET, not cancelled, completes.
        received.clear()
        cancel["at"] = None
        result = collect_retrieve_responses(assoc.send_c_get(build_identifier("STUDY", k, charset=None), sop, msg_id=22))
        assert result[1] == 0x0000 and result[2]["Completed"] == len(expected), result
        assert_received_as_stored(qr, received, expected)
    finally:
        assoc.release()
