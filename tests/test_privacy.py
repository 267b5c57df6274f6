"""Patient data (../shared/docs/hardening.md, 'Patient data'): uploads stay in memory, nothing
identifying reaches a file, a log, an export or the screen's metadata table.

The uploads are phantom DICOM slices stamped with fake identifiers (name, patient ID, birth
date, institution, accession number, referring physician, dates, fresh UIDs) and saved under
identifying file names, as real exports often are.

(a) ``test_upload_writes_nothing_and_logs_nothing`` (browser): a real ``streamlit run`` of a
    private copy of the working tree (so that others editing the real tree meanwhile are not
    taken for the app), with TMPDIR and HOME on fresh folders. Once the server is up and warm,
    every file under TMPDIR, HOME and the server's tree is recorded (and watched with inotify,
    and the files the server holds open for writing polled from /proc); a browser session
    uploads the three files, marks the lesion, gets the predictions and downloads both
    reports. Then nothing may have been created, changed or opened for writing, the server log
    may hold neither identifiers nor file names, and neither may the reports; a changed file in
    the real working tree may hold no identifier. Last, three 2 MiB slices are uploaded:
    Streamlit spools uploads over 1 MiB to a temporary file, which must be under TMPDIR (the
    deployment guide puts TMPDIR on tmpfs) and unnamed (O_TMPFILE), or unlinked before anything
    is written to it where the file system lacks O_TMPFILE (judged from inotify's create,
    write and delete events, in order). The warm-up includes one such upload, of plain slices:
    tempfile probes TMPDIR with a named file once per process, at its first temporary file.
(b) ``test_reports_are_deidentified``: report_json and report_png of such a case carry no
    identifier, file name, UID or date, and the PNG no text or EXIF chunk at all.
(c) ``test_displayed_metadata_is_an_allow_list``: CTSlice.metadata() and the metadata table
    the review page shows are the allow-list, without identifiers.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser_harness import (
    CHROMIUM,
    PREDICTION_IMAGES,
    ROOT,
    draw_box,
    free_port,
    launch,
    start_server,
    stop_server,
    upload_dicom,
    wait_healthy,
    wait_settled,
)

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "MRN-123456"
BIRTH_DATE = "19610315"
STUDY_DATE = "20240229"
INSTITUTION = "ST ELSEWHERE GENERAL HOSPITAL"
ACCESSION = "ACC-7731-2024"
IDENTIFYING_TAGS: dict[str, str] = {
    "PatientName": PATIENT_NAME,
    "PatientID": PATIENT_ID,
    "PatientBirthDate": BIRTH_DATE,
    "OtherPatientIDs": "OPI-998877",
    "InstitutionName": INSTITUTION,
    "InstitutionAddress": "1 ELSEWHERE ROAD, SPRINGFIELD",
    "AccessionNumber": ACCESSION,
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "OperatorsName": "RATCHED^MILDRED",
    "StationName": "CTSTATION-77",
    "StudyID": "STUDY-4471",
    "StudyDate": STUDY_DATE,
    "SeriesDate": STUDY_DATE,
    "AcquisitionDate": STUDY_DATE,
    "ContentDate": STUDY_DATE,
}
# How the identifiers could show up in text: as stored, or reformatted (case-insensitive search).
NEEDLES: tuple[str, ...] = (
    *IDENTIFYING_TAGS.values(),
    "JANE",
    "DOE JANE",
    "JANE DOE",
    "123456",
    "1961-03-15",
    "2024-02-29",
    "ELSEWHERE",
    "GREGORY",
    "RATCHED",
)
UID_ROOT = "1.2.826.0.1.3680043.8.498.4242."  # fresh instance UIDs under this root
UID_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# Upload file names that identify the patient (a common export habit); %s is the phase.
FILE_NAME = "KOWALSKI_ANNA_PESEL-61031512345_%s.dcm"
FILE_NEEDLES = ("KOWALSKI", "ANNA", "PESEL", "61031512345")

# CTSlice.metadata(): the hardening allow-list (modality, manufacturer, kVp, slice thickness,
# pixel spacing, and the phase hints: series description, contrast agent, acquisition time).
ALLOWED_METADATA = frozenset(
    {
        "modality",
        "manufacturer",
        "kvp",
        "slice_thickness_mm",
        "pixel_spacing_mm",
        "series_description",
        "contrast_agent",
        "acquisition_time",
    }
)
SKIP_DIRS = frozenset({".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"})
PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})


# --- identifying phantom files ---------------------------------------------------------------------


def identifying_case(out: Path) -> tuple[list[Path], Any, list[str]]:
    """One phantom case written as DICOM, re-stamped with the fake identifiers and fresh UIDs,
    saved under identifying file names in `out`. Returns (files in phase order, the phantom
    case, the instance UIDs written)."""
    import pydicom
    from pydicom.uid import generate_uid

    from livercore.phantom.cohort import generate_case
    from livercore.phantom.export import write_case

    case = generate_case("test-2016", 0, 3)
    row = write_case(case, out / "plain")
    study_uid, frame_uid = generate_uid(UID_ROOT), generate_uid(UID_ROOT)
    files: list[Path] = []
    uids: list[str] = [study_uid, frame_uid]
    for phase in ("unenhanced", "arterial", "delayed"):
        ds = pydicom.dcmread(out / "plain" / str(row[phase]))
        for keyword, value in IDENTIFYING_TAGS.items():
            setattr(ds, keyword, value)
        series_uid, sop_uid = generate_uid(UID_ROOT), generate_uid(UID_ROOT)
        ds.StudyInstanceUID, ds.FrameOfReferenceUID = study_uid, frame_uid
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        uids += [series_uid, sop_uid]
        path = out / (FILE_NAME % phase)
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files, case, uids


def enlarged_copy(src: Path, dst: Path) -> Path:
    """`src` (a 512 x 512 CT slice) as a 1024 x 1024 slice, 2 MiB: same header, same anatomy."""
    import pydicom

    ds = pydicom.dcmread(src)
    ds.PixelData = np.kron(ds.pixel_array, np.ones((2, 2), ds.pixel_array.dtype)).tobytes()
    ds.Rows, ds.Columns = 2 * ds.Rows, 2 * ds.Columns
    ds.PixelSpacing = [float(v) / 2 for v in ds.PixelSpacing]
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def leaks(blob: bytes | str, needles: Iterable[str]) -> list[str]:
    """The needles found in blob (case-insensitive)."""
    text = (blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob).lower()
    return sorted({n for n in needles if n.lower() in text})


# --- file system watch -------------------------------------------------------------------------------


def snapshot(roots: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file and folder under roots, caches and .git left out."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            for name in [*files, *dirs]:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                out[path] = (st.st_size, st.st_mtime_ns) if not os.path.isdir(path) else (0, 0)
    return out


class OpenForWriting:
    """Polls /proc/<pid>/fd (every few ms, in a thread) for regular files a process holds open
    for writing: catches what directory watchers cannot see, such as unnamed O_TMPFILE spools
    (shown as '<dir>/#<inode> (deleted)'). Best effort: a file open for less than the polling
    interval may be missed."""

    def __init__(self, pid: int, ignore: Iterable[Path] = (), interval_s: float = 0.003) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.ignore = {str(p) for p in ignore}
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fd-poll", daemon=True)

    def _run(self) -> None:
        fd_dir = f"/proc/{self.pid}/fd"
        for _ in range(200_000):  # bounded: about 10 min at the polling interval
            if self._stop.is_set():
                return
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                return
            for fd in fds:
                try:
                    target = os.readlink(f"{fd_dir}/{fd}")
                    if not target.startswith("/") or target.startswith(("/dev/", "/proc/")):
                        continue
                    if target in self.ignore:
                        continue
                    with open(f"/proc/{self.pid}/fdinfo/{fd}") as info:
                        flags = next(int(v.split()[1], 8) for v in info if v.startswith("flags:"))
                except (OSError, StopIteration, ValueError, IndexError):
                    continue
                if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                    self.seen.add(target)
            time.sleep(self.interval_s)

    def __enter__(self) -> OpenForWriting:
        if os.path.isdir(f"/proc/{self.pid}/fd"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class Inotify:
    """Every create / write / move-in (and, with `mask`, delete / move-out) under some folders
    (recursively), from Linux inotify; a no-op elsewhere. Catches files created and deleted again
    between two snapshots."""

    IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
    IN_CREATE, IN_DELETE, IN_Q_OVERFLOW, IN_ISDIR = 0x100, 0x200, 0x4000, 0x40000000
    MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
    WRITES = IN_MODIFY | IN_CLOSE_WRITE

    def __init__(self, roots: Iterable[Path], mask: int = MASK) -> None:
        self.fd = -1
        self.paths: dict[int, str] = {}
        if not sys.platform.startswith("linux"):
            return
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            self.fd = -1
        if self.fd < 0:
            return
        for root in roots:
            for folder, dirs, _ in os.walk(root):
                dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
                wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), mask)
                if wd >= 0:
                    self.paths[wd] = folder

    @property
    def active(self) -> bool:
        return self.fd >= 0 and bool(self.paths)

    def records(self) -> list[tuple[str, int]]:
        """(path, event mask) per event since the last call, in the order they happened; names
        inside cache folders are left out, a lost stretch is ('<inotify queue overflow...>', mask)."""
        out: list[tuple[str, int]] = []
        if self.fd < 0:
            return out
        for _ in range(10_000):
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            offset = 0
            while offset + 16 <= len(buf):
                wd, mask, _cookie, size = struct.unpack_from("iIII", buf, offset)
                name = buf[offset + 16 : offset + 16 + size].rstrip(b"\0").decode("utf-8", "replace")
                offset += 16 + size
                if mask & self.IN_Q_OVERFLOW:
                    out.append(("<inotify queue overflow: events lost>", mask))
                elif name not in SKIP_DIRS:
                    out.append((os.path.join(self.paths.get(wd, "?"), name), mask))
        return out

    def events(self) -> list[str]:
        """'<path>' per event since the last call; names inside cache folders are left out."""
        return [path for path, _ in self.records()]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def transient_names(records: list[tuple[str, int]], folder: Path) -> tuple[set[str], list[str]]:
    """Judge the names that appeared in `folder` from inotify records (in order): (the transient
    ones: created and unlinked again before a byte was written to the file under that name, as
    tempfile's fallback for file systems without O_TMPFILE does (mkstemp, then unlink, then
    write); every other event under a name, described). Writes to an unnamed O_TMPFILE spool
    show as '#<inode>' with no CREATE and are not names; writes to a file after its unlink
    (its old name) are what a transient spool does and pass."""
    named: dict[str, list[int]] = {}
    problems: list[str] = []
    for path, mask in records:
        parent, name = os.path.split(path)
        if mask & Inotify.IN_Q_OVERFLOW or parent != str(folder):
            problems.append(f"{path} (event {mask:#x})")
        elif not (name.startswith("#") and name[1:].isdigit()) or mask & (
            Inotify.IN_CREATE | Inotify.IN_MOVED_TO
        ):
            named.setdefault(path, []).append(mask)
    transient: set[str] = set()
    for path, masks in named.items():
        state, created, faults = "there before", False, []
        for mask in masks:
            if mask & (Inotify.IN_CREATE | Inotify.IN_MOVED_TO):
                state, created = "named", True
            elif mask & (Inotify.IN_DELETE | Inotify.IN_MOVED_FROM):
                if state != "named":
                    faults.append("removed, but there before the uploads")
                state = "gone"
            elif mask & Inotify.WRITES and state != "gone":
                faults.append("written under its name" if state == "named" else "written, there before")
        if state == "named":
            faults.append("created and still there")
        if faults:
            problems.append(f"{path} ({', '.join(sorted(set(faults)))})")
        elif created:
            transient.add(path)
    return transient, problems


# --- PNG chunks ---------------------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG, CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks: list[tuple[bytes, bytes]] = []
    offset = 8
    while offset < len(data) and len(chunks) < 100_000:
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, payload))
        offset += 12 + length
        if kind == b"IEND":
            break
    return chunks


def assert_png_clean(png: bytes, needles: Iterable[str]) -> None:
    from PIL import Image

    needles = list(needles)
    chunks = png_chunks(png)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert not PNG_TEXT_CHUNKS & set(kinds), f"metadata chunks in the PNG: {sorted(set(kinds))}"
    for kind, payload in chunks:
        if kind != b"IDAT":  # compressed pixels; every other chunk is searched as it is
            assert not leaks(payload, needles), f"identifier in PNG chunk {kind!r}"
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert not leaks(repr(image.info), needles)
        assert not getattr(image, "text", {}), f"PNG text chunks: {getattr(image, 'text', {})}"
        assert len(image.getexif()) == 0


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.browser_harness import write_untrained_models

    return write_untrained_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def identifying_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Any, list[str]]:
    return identifying_case(tmp_path_factory.mktemp("uploads"))


def all_needles(files: list[Path], uids: list[str]) -> list[str]:
    return [*NEEDLES, *FILE_NEEDLES, *(f.name for f in files), *(f.stem for f in files), *uids]


def private_tree(out: Path) -> Path:
    """A copy of the repository's working tree (no .git, caches, models or dev data) for the
    server to run from: other people editing the real tree while the test runs cannot be
    mistaken for the app writing there, and whatever the app would write beside its own code
    (``Path(__file__)``-relative paths, its working directory) lands in the copy."""
    ignore = shutil.ignore_patterns(*SKIP_DIRS, "models", ".devdata", "*.egg-info", ".venv", "*.pyc")
    return Path(shutil.copytree(ROOT, out, ignore=ignore, symlinks=True))


# Variables the server must not inherit from the test process: cache and config locations would
# send its writes out of the watched folders. TORCHINDUCTOR_CACHE_DIR in particular: torch sets it
# in os.environ (torch._inductor cache_dir(), run when torchvision imports torch._dynamo), so once
# an earlier test in the same pytest run has imported grad-cam, a server that inherits it no
# longer calls tempfile.gettempdir() at its first analysis, and does so instead at its first
# spooled upload (below), with tempfile's one-off probe of TMPDIR: a named 8-character file
# written with b"blat" and unlinked at once, which the fd poller then sees by chance.
SERVER_ENV_DROPPED = (
    "XDG_",
    "MPLCONFIGDIR",
    "TORCH_HOME",
    "TORCHINDUCTOR_",
    "TRITON_",
    "STREAMLIT_",
    "PYTHONPATH",
)


def server_env(app: Path, models: Path, tmpdir: Path, home: Path) -> dict[str, str]:
    """The server's environment: TMPDIR and HOME on fresh folders, livercore imported from `app`,
    whether the test runs alone or after others in one pytest process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVER_ENV_DROPPED)}
    return env | {
        "LIVERCORE_MODELS": str(models),
        "TMPDIR": str(tmpdir),
        "HOME": str(home),
        "PYTHONPATH": str(app),
    }


# --- (a) uploads leave no trace -------------------------------------------------------------------------


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_upload_writes_nothing_and_logs_nothing(
    tmp_path: Path, browser: Any, models_dir: Path, identifying_files: tuple[list[Path], Any, list[str]]
) -> None:
    from livercore.vocab import PHASES, Phase

    files, case, uids = identifying_files
    needles = all_needles(files, uids)
    server_tmp, server_home, log = tmp_path / "server-tmp", tmp_path / "server-home", tmp_path / "server.log"
    server_tmp.mkdir()
    server_home.mkdir()
    app = private_tree(tmp_path / "app")
    env = server_env(app, models_dir, server_tmp, server_home)
    imported = subprocess.run(
        [sys.executable, "-c", "import livercore; print(livercore.__file__)"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert Path(imported).is_relative_to(app), f"the server would import livercore from {imported}"
    watched = [server_tmp, server_home, app]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(None, port, cwd=app, env=env, log=log)
    watcher: Inotify | None = None
    spool_watch: Inotify | None = None
    try:
        wait_healthy(port)
        # Warm up (models loaded, grad-cam imported, Streamlit's own start-up files written)
        # with an example case, then take the 'before' picture.
        warm = browser.new_page(viewport={"width": 1500, "height": 1100})
        warm.goto(f"{url}/review?case=teaching-0-0026")
        warm.wait_for_selector("text=Triphasic model:", timeout=90_000)
        wait_settled(warm, PREDICTION_IMAGES, timeout_ms=20_000)
        warm.close()
        # ... and a spooled upload of the phantom case's plain (not identifying) slices, enlarged:
        # the server's first temporary file makes tempfile probe TMPDIR once per process (a named
        # file, 4 bytes, unlinked at once), which must happen before the pictures, whatever
        # torch's imports did or did not do at the first analysis.
        plain = [files[0].parent / "plain" / case.case_id / f"{p.value}.dcm" for p in PHASES]
        warm = browser.new_page(viewport={"width": 1500, "height": 1100})
        warm.goto(f"{url}/review")
        warm.wait_for_selector("text=Review a lesion", timeout=30_000)
        upload_dicom(warm, [enlarged_copy(f, tmp_path / "warm" / f.name) for f in plain])
        warm.close()
        time.sleep(1.0)
        before, before_repo = snapshot(watched), snapshot([ROOT])
        watcher = Inotify(watched)
        with OpenForWriting(server.pid, ignore=[log]) as held:
            context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{url}/review")
            page.wait_for_selector("text=Review a lesion", timeout=30_000)
            upload_dicom(page, files)
            row, col = case.lesion_center[Phase.ARTERIAL]
            draw_box(page, 1, row, col, case.lesion_diameter_mm / case.spacing_mm / 2 * 1.1)
            page.wait_for_selector("text=Triphasic model:", timeout=30_000)
            wait_settled(page, PREDICTION_IMAGES, timeout_ms=30_000)
            page.get_by_text("Acquisition (allow-listed header values only)").click()
            page.wait_for_selector("text=manufacturer", timeout=10_000)
            screen = page.inner_text("body")
            downloads = {}
            for label in ("Report (JSON)", "Report (PNG)"):
                with page.expect_download(timeout=30_000) as info:
                    page.get_by_role("button", name=label).click()
                target = tmp_path / "downloads" / info.value.suggested_filename
                info.value.save_as(target)
                downloads[label] = target.read_bytes()
            context.close()
            time.sleep(1.0)  # let anything the server writes late reach the disk
        events = watcher.events()
        after, after_repo = snapshot(watched), snapshot([ROOT])

        # Uploads over 1 MiB (a 1024 x 1024 slice): Streamlit's multipart parser (Starlette)
        # spools them to a temporary file. The deployment guide puts TMPDIR on tmpfs for this:
        # hold it to that, the spool must be under TMPDIR and unnamed (O_TMPFILE) or, where the
        # file system lacks O_TMPFILE, unlinked before a byte is written to it. Inotify sees
        # every name, however briefly it lived; the fd poller sees where the spool was.
        large = [enlarged_copy(f, tmp_path / "large" / f.name) for f in files]
        spool_watch = Inotify(watched, Inotify.MASK | Inotify.IN_DELETE | Inotify.IN_MOVED_FROM)
        with OpenForWriting(server.pid, ignore=[log]) as spooled:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{url}/review")
            page.wait_for_selector("text=Review a lesion", timeout=30_000)
            upload_dicom(page, large)
            page.close()
            time.sleep(0.5)
        spool_records = spool_watch.records()
        after_large = snapshot(watched)
    finally:
        if watcher is not None:
            watcher.close()
        if spool_watch is not None:
            spool_watch.close()
        stop_server(server)

    created = sorted(set(after) - set(before))
    changed = sorted(p for p in set(after) & set(before) if after[p] != before[p])
    assert not created, f"files created while a case was uploaded and analysed: {created}"
    assert not changed, f"files changed while a case was uploaded and analysed: {changed}"
    assert not events, f"writes seen by inotify while a case was uploaded and analysed: {events[:20]}"
    assert not held.seen, f"files the server held open for writing during the upload: {held.seen}"
    assert "Uploaded DICOM slices" in screen and case.manufacturer in screen  # header values were shown
    # The real working tree may be edited by people while the test runs: there, a new or changed
    # file fails the test only if it holds one of the uploads' distinctive identifiers.
    distinctive = [PATIENT_NAME, PATIENT_ID, INSTITUTION, ACCESSION, FILE_NEEDLES[0], *uids]
    touched = [p for p, v in after_repo.items() if before_repo.get(p) != v and os.path.isfile(p)]
    for path in touched:
        blob = Path(path).read_bytes()[: 64 * 2**20]
        assert not leaks(blob, distinctive), f"patient data written to {path}"

    server_log = log.read_bytes()
    assert b"Local URL" in server_log or b"URL" in server_log  # the log was captured
    assert not leaks(server_log, needles), f"identifiers in the server log: {leaks(server_log, needles)}"
    # The page may show the user's own file names (to assign the phases), never header identifiers.
    assert not leaks(screen, [*NEEDLES, *uids]), f"identifiers on the page: {leaks(screen, NEEDLES)}"
    report = json.loads(downloads["Report (JSON)"])
    assert report["input"]["source"] == "Three DICOM slices"
    assert not leaks(downloads["Report (JSON)"], needles)
    assert_png_clean(downloads["Report (PNG)"], needles)

    assert after_large == after, "named files appeared while large files were uploaded"
    transient, faulty = transient_names(spool_records, server_tmp)
    assert not faulty, f"large uploads: files written under a name, or outside TMPDIR: {faulty[:20]}"
    outside = [
        p
        for p in spooled.seen
        if not (p.startswith(f"{server_tmp}/") and (p.endswith(" (deleted)") or p in transient))
    ]
    assert not outside, f"large uploads spooled outside TMPDIR or under a name: {outside}"
    print(f"large uploads: spool files seen {sorted(spooled.seen)}, transient names {sorted(transient)}")


# --- (b) exports are de-identified ----------------------------------------------------------------------


def analysed_case(files: list[Path], case: Any, models_dir: Path) -> tuple[Any, Any, Any, Any, Any]:
    """(ReviewCase, Marks, Analysis, models, Measurements) as the review page builds them."""
    from livercore import phases
    from livercore.analysis import analyse_crops, load_models
    from livercore.app import inputs
    from livercore.app.marks import Marks
    from livercore.measure import measure_case
    from livercore.preprocess import LesionBox
    from livercore.vocab import PHASES

    slices = inputs.read_dicom_slices([(f.name, f.read_bytes()) for f in files])
    assignment = phases.assign_phases(slices)
    review = inputs.case_from_pool("dicom", slices, assignment)
    boxes = {
        p: LesionBox.from_center(
            case.lesion_center[p][0], case.lesion_center[p][1], case.lesion_diameter_mm * 1.1, case.spacing_mm
        )
        for p in PHASES
    }
    marks = Marks(boxes=boxes, aorta={p: case.aorta_center[p] for p in PHASES})
    models = load_models(models_dir)
    analysis = analyse_crops(inputs.crops_for(review, boxes), models, cam_method="GradCAM")
    measurements = measure_case(review.images, review.spacing_mm, boxes, marks.liver, marks.aorta)
    return review, marks, analysis, models, measurements


def test_reports_are_deidentified(
    models_dir: Path, identifying_files: tuple[list[Path], Any, list[str]]
) -> None:
    from livercore.app.report import report_json, report_png

    files, case, uids = identifying_files
    review, marks, analysis, models, measurements = analysed_case(files, case, models_dir)
    assert review.metadata  # the case does carry header values, so the report has something to drop
    needles = all_needles(files, uids)

    blob = report_json(review, marks, analysis, models, measurements)
    report = json.loads(blob)
    assert report["models"] and report["measurements_hu"] is not None
    assert not leaks(blob, needles), f"identifiers in the JSON report: {leaks(blob, needles)}"
    # Nothing dated but the report's own creation time (no study, series or birth date).
    dated = [
        s
        for s in _strings(report)
        if any(y in s for y in ("1961", "2024", "2020")) and s != report["created_utc"]
    ]
    assert not dated, dated

    png = report_png(review, analysis, marks=marks, measurements=measurements, opacity=0.45)
    assert_png_clean(png, needles)


def _strings(value: Any) -> Iterator[str]:
    """Every string (keys too) in a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# --- (c) the metadata on screen -----------------------------------------------------------------------


def test_displayed_metadata_is_an_allow_list(identifying_files: tuple[list[Path], Any, list[str]]) -> None:
    from livercore import dicom_io, phases
    from livercore.app import inputs, ui

    files, _, uids = identifying_files
    needles = [*NEEDLES, *FILE_NEEDLES, *uids]
    for path in files:
        s = dicom_io.read_ct_slice(path.read_bytes(), label=path.name)
        meta = s.metadata()
        assert set(meta) <= ALLOWED_METADATA, set(meta) - ALLOWED_METADATA
        assert meta["modality"] == "CT" and meta["manufacturer"] and meta["kvp"]
        assert not leaks(repr(meta), needles), leaks(repr(meta), needles)

    slices = inputs.read_dicom_slices([(f.name, f.read_bytes()) for f in files])
    review = inputs.case_from_pool("dicom", slices, phases.assign_phases(slices))
    for meta in review.metadata.values():
        assert set(meta) <= ALLOWED_METADATA | {"phase_hint"}
    table = ui.metadata_table(review.metadata)
    shown = table.to_csv() + review.title + " ".join(review.warnings)
    assert set(table.index) <= set(ui.METADATA_LABELS.values())
    assert not leaks(shown, [*needles, *(f.name for f in files)]), leaks(shown, needles)
    assert np.isfinite(review.images[next(iter(review.images))]).all()
