"""The store (livercore.store): the migrations from an empty database, the default location,
round trips, names as data, concurrent writers, and no identifier in the file.

Every test runs on SQLite, and on PostgreSQL when LIVERCORE_TEST_POSTGRES_URL is set (.ci/run
starts a server and sets it); each PostgreSQL test gets a schema of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from livercore import cohort_builder as cb
from livercore import store
from livercore.errors import InputError
from livercore.store.schema import Annotator, Base, Lesion, LesionPhase, Study
from livercore.vocab import PHASES, Category, Phase

POSTGRES_VARIABLE = "LIVERCORE_TEST_POSTGRES_URL"
TABLES = {
    "settings",
    "annotators",
    "studies",
    "lesions",
    "lesion_phases",
    "learners",
    "attempts",
    "review_cards",
    "alembic_version",
}


def _postgres_url() -> Iterator[str]:
    base = os.environ.get(POSTGRES_VARIABLE)
    if not base:
        pytest.skip(f"{POSTGRES_VARIABLE} is not set (.ci/run starts PostgreSQL and sets it)")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    try:
        yield rendered
    finally:
        store.dispose(rendered)
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: an SQLite file that does not exist yet, or a fresh PostgreSQL schema."""
    if request.param == "postgresql":
        yield from _postgres_url()
        return
    rendered = f"sqlite:///{tmp_path / 'sub' / 'store.sqlite'}"
    yield rendered
    store.dispose(rendered)


def a_draft(section: int = 3, sections: int = 9) -> cb.LesionDraft:
    points = {
        p: cb.PhasePoint(
            section + i, sections, 100.5 + i, 200.25 - i, "propagated", (0.5, -1.0, 2.0), "", True
        )
        for i, p in enumerate(PHASES)
    }
    points[Phase.ARTERIAL] = cb.PhasePoint(section, sections, 101.0, 201.0, "clicked", accepted=True)
    return cb.LesionDraft(Phase.ARTERIAL, (1.0, 2.0, 3.0), points)


CHOICE = cb.PhaseChoice({Phase.UNENHANCED: 0, Phase.ARTERIAL: 1, Phase.DELAYED: 3}, "portal-venous")


def test_first_use_migrates_an_empty_database_to_the_schema(url: str) -> None:
    engine = store.get_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == "0002"
        assert compare_metadata(context, Base.metadata) == []  # the migrations build what schema.py says
    store.upgrade(engine)  # again: nothing to do
    assert store.get_engine(url) is engine


def test_the_migrations_go_down_to_nothing_and_up_again(url: str) -> None:
    engine = store.get_engine(url)
    store.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    store.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_the_default_database_is_a_file_under_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(store.URL_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = tmp_path / "data" / "livercore" / "livercore.sqlite"
    assert store.default_database_path() == expected
    assert store.database_url() == f"sqlite:///{expected}"
    try:
        builder = cb.BuilderStore.open()
        builder.annotator_id("Dr Ada")
        assert expected.is_file()
    finally:
        store.dispose(store.database_url())
    monkeypatch.delenv("XDG_DATA_HOME")
    assert (
        store.default_database_path() == Path.home() / ".local" / "share" / "livercore" / "livercore.sqlite"
    )
    monkeypatch.setenv(store.URL_VARIABLE, "postgresql+psycopg://u@h/db")
    assert store.database_url() == "postgresql+psycopg://u@h/db"


def test_a_lesion_round_trips(url: str) -> None:
    builder = cb.BuilderStore.open(url)
    lesion_id = builder.add_lesion(
        "k" * 64,
        4,
        CHOICE,
        a_draft(),
        diameter_mm=23.5,
        category=Category.B,
        subtype="icc",
        annotator="Dr Ada",
    )
    (saved,) = builder.lesions("k" * 64)
    assert (saved.id, saved.number, saved.reference, saved.category, saved.subtype) == (
        lesion_id,
        1,
        Phase.ARTERIAL,
        Category.B,
        "icc",
    )
    assert saved.diameter_mm == 23.5 and saved.annotator == "Dr Ada" and saved.review == ""
    assert saved.points[Phase.ARTERIAL] == cb.SavedPoint(1, 3, 9, 101.0, 201.0, (0.0, 0.0, 0.0), "clicked")
    assert saved.points[Phase.DELAYED] == cb.SavedPoint(
        3, 5, 9, 102.5, 198.25, (0.5, -1.0, 2.0), "propagated"
    )
    record = builder.records(["k" * 64])["k" * 64]
    assert (record.status, record.series_count, record.lesions) == ("in_progress", 4, 1)
    assert record.choice is not None and record.choice.series == CHOICE.series
    assert record.choice.late == "portal-venous" and record.choice.confirmed
    builder.set_status("k" * 64, 4, "done", "Dr Bea")
    assert builder.records()["k" * 64].status == "done"
    builder.delete_lesion("other", lesion_id)  # not that study's: kept
    assert len(builder.lesions("k" * 64)) == 1
    builder.delete_lesion("k" * 64, lesion_id)
    assert builder.lesions("k" * 64) == [] and builder.records()["k" * 64].lesions == 0


def test_a_lesion_is_not_saved_before_every_phase_is_accepted(url: str) -> None:
    builder = cb.BuilderStore.open(url)
    draft = a_draft()
    pending = cb.LesionDraft(
        draft.reference,
        draft.centre_mm,
        {**draft.points, Phase.DELAYED: cb.PhasePoint(4, 9, 1.0, 1.0, "propagated")},
    )
    with pytest.raises(InputError, match="every phase"):
        builder.add_lesion("k", 3, CHOICE, pending, diameter_mm=10, category="A", subtype="", annotator="A")
    with pytest.raises(InputError, match="not a subtype"):
        builder.add_lesion("k", 3, CHOICE, draft, diameter_mm=10, category="A", subtype="icc", annotator="A")
    with pytest.raises(InputError, match="more than 0"):
        builder.add_lesion("k", 3, CHOICE, draft, diameter_mm=0, category="A", subtype="", annotator="A")
    assert builder.records() == {}


@pytest.mark.parametrize(
    "name",
    [
        "Robert'); DROP TABLE lesions;--",
        "../../etc/passwd",
        "%s %(x)s ? :name",
        'O\'Brien "Bob"',
        "名前 テスト",
    ],
)
def test_an_annotator_name_is_data(url: str, name: str) -> None:
    builder = cb.BuilderStore.open(url)
    builder.add_lesion("k", 3, CHOICE, a_draft(), diameter_mm=10, category="E", subtype="", annotator=name)
    assert builder.lesions("k")[0].annotator == name
    assert builder.annotator_id(name) == builder.annotator_id(f"  {name} ")  # one annotator
    assert set(inspect(builder.engine).get_table_names()) >= TABLES


def test_concurrent_writers_lose_nothing(url: str) -> None:
    """Eight annotators (threads, as Streamlit's sessions) save 15 lesions each into the same
    two studies, set statuses and phases between: every lesion is there once, each study has
    one row and each annotator one."""
    builder = cb.BuilderStore.open(url)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(15):
                key = "study-a" if i % 2 else "study-b"
                builder.add_lesion(
                    key,
                    4,
                    CHOICE,
                    a_draft(section=i),
                    diameter_mm=10 + worker,
                    category="ABCDE"[i % 5],
                    subtype="",
                    annotator=f"annotator {worker}",
                )
                if i % 5 == 0:
                    builder.set_status(key, 4, "in_progress", f"annotator {worker}")
                    builder.save_phases(key, 4, CHOICE, f"annotator {worker}")
        except BaseException as err:  # collected: a thread's exception would be lost
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with store.session(builder.engine) as s:
        assert s.scalar(select(func.count(Lesion.id))) == 120
        assert s.scalar(select(func.count(LesionPhase.id))) == 360
        assert s.scalar(select(func.count(Study.id))) == 2
        assert s.scalar(select(func.count(Annotator.id))) == 8
    records = builder.records()
    assert records["study-a"].lesions == 56 and records["study-b"].lesions == 64
    assert sorted({(lesion.annotator, lesion.diameter_mm) for lesion in builder.lesions("study-a")}) == [
        (f"annotator {w}", 10.0 + w) for w in range(8)
    ]


WRITER = """
import sys
from livercore import cohort_builder as cb
from livercore.vocab import PHASES, Phase
choice = cb.PhaseChoice(dict(zip(PHASES, (0, 1, 3))), "delayed")
builder = cb.BuilderStore.open(sys.argv[1])
for i in range(int(sys.argv[3])):
    points = {p: cb.PhasePoint(i, 20, 10.0, 20.0, "clicked", accepted=True) for p in PHASES}
    draft = cb.LesionDraft(Phase.ARTERIAL, (0.0, 0.0, 0.0), points)
    builder.add_lesion("shared", 4, choice, draft, diameter_mm=12, category="C", subtype="", annotator=sys.argv[2])
print(builder.salt())
"""


def test_several_processes_write_into_one_database(url: str) -> None:
    """Three server processes starting on the same (empty) database at once: one schema, one
    salt, every lesion."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop(cb.SECRET_VARIABLE, None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"process {n}", "20"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1  # one salt, made once
    assert cb.BuilderStore.open(url).records()["shared"].lesions == 60


def test_the_salt_is_made_once_under_concurrency(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cb.SECRET_VARIABLE, raising=False)
    builder = cb.BuilderStore.open(url)
    salts: list[str] = []
    threads = [threading.Thread(target=lambda: salts.append(builder.salt())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(salts) == 8 and len(set(salts)) == 1 and len(salts[0]) == 64


def test_the_sqlite_file_is_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    try:
        engine = store.get_engine(url)
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose(url)


def test_no_folder_name_or_header_value_is_in_the_file(tmp_path: Path) -> None:
    """The store's side of the identifier check (tests/test_cohort_builder.py drives the
    builder's every path): a study is its salted key, a lesion its numbers."""
    url = f"sqlite:///{tmp_path / 'i.sqlite'}"
    builder = cb.BuilderStore.open(url)
    folder = "DOE_JOHN_19620704_MRN7730021"
    key = cb.study_key(folder, builder.salt())
    builder.save_phases(key, 3, CHOICE, "Dr Ada")
    builder.add_lesion(
        key, 3, CHOICE, a_draft(), diameter_mm=12, category="D", subtype="typical", annotator="Dr Ada"
    )
    builder.set_status(key, 3, "done", "Dr Ada")
    store.dispose(url)
    data = b"".join(p.read_bytes() for p in tmp_path.glob("i.sqlite*"))
    assert key.encode() in data
    for value in (folder, "DOE", "JOHN", "19620704", "7730021"):
        assert value.encode() not in data
