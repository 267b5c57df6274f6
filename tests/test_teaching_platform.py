"""The teaching platform's logic: who is learning, the findings and their truth, FSRS scheduling
and the queue, the record in the store (SQLite, and PostgreSQL under .ci/run), progress."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fsrs import Rating

from livercore import identity, store
from livercore.teaching import catalogue, features, progress, record, schedule
from livercore.vocab import Category, Phase
from tests.test_store import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# --- identity --------------------------------------------------------------------------------------


def test_demo_mode_takes_the_typed_name_and_says_so() -> None:
    who = identity.resolve(demo_name="  Dr\tTanaka \n", environ={})
    assert who is not None and who.subject == "demo:Dr Tanaka" and who.role == "resident"
    assert "demo mode" in who.how
    assert identity.resolve(demo_name="", environ={}) is None
    assert identity.demo_mode(login_configured=False, environ={})


def test_the_proxy_header_is_honoured_only_when_configured() -> None:
    headers = {"X-Forwarded-User": "k.yasaka"}
    assert identity.resolve(headers=headers, demo_name="mallory", environ={}).source == "demo"
    env = {identity.HEADER_VARIABLE: "x-forwarded-user", identity.EDUCATORS_VARIABLE: "K.Yasaka, other"}
    who = identity.resolve(headers=headers, demo_name="mallory", environ=env)
    assert who is not None and who.subject == "proxy:k.yasaka" and who.is_educator
    # configured but absent: nobody, never the typed name
    assert identity.resolve(headers={}, demo_name="mallory", environ=env) is None
    assert not identity.demo_mode(login_configured=False, environ=env)


def test_oidc_login_comes_first() -> None:
    user = {"is_logged_in": True, "email": "r.one@hospital.example", "name": "R One"}
    env = {identity.HEADER_VARIABLE: "X-Forwarded-User"}
    who = identity.resolve(user=user, headers={"X-Forwarded-User": "else"}, environ=env)
    assert who is not None and (who.source, who.identity, who.display_name) == (
        "oidc",
        "r.one@hospital.example",
        "R One",
    )


# --- findings --------------------------------------------------------------------------------------


def test_feature_truth_follows_the_flags() -> None:
    hcc = {"aphe": 1.0, "washout": 1.0, "capsule": 1.0, "rim_enhancement": 0.0, "peripheral_nodular": 0.0}
    assert features.truth_from_flags(hcc, Category.A) == {"aphe", "washout", "capsule"}
    haemangioma = {"aphe": 0, "peripheral_nodular": 1, "fill_in": 1}
    assert features.truth_from_flags(haemangioma, Category.D) == {"peripheral_nodular", "fill_in"}
    rim = {"aphe": 1, "rim_enhancement": 1}
    assert features.truth_from_flags(rim, Category.B) == {"rim"}  # rim APHE is not non-rim APHE
    assert features.truth_from_flags({}, Category.E) == {"no_enhancement"}
    assert features.truth_from_flags({"fat": float("nan")}, Category.C) == set()


def test_every_library_case_has_a_truth_and_the_classic_hcc_pattern_is_there() -> None:
    cases = catalogue.library_cases()
    truths = {e.case_id: features.case_truth(e) for e in cases}
    assert all(features.case_truth(e) == {"no_enhancement"} for e in cases if e.category is Category.E)
    classic = [truths[e.case_id] for e in cases if e.subtype == "imaging"]
    assert classic and all({"aphe", "washout"} <= t for t in classic)
    assert any("peripheral_nodular" in truths[e.case_id] for e in cases if e.subtype == "typical")


def test_grading_marks_hits_misses_and_false_alarms() -> None:
    asked = features.features_of([Phase.ARTERIAL, Phase.DELAYED])
    assert all(f.phase in (Phase.ARTERIAL, Phase.DELAYED) for f in asked)
    marks = features.grade(asked, {"aphe", "capsule", "rim"}, {"aphe", "washout", "capsule"})
    verdicts = {m.feature.key: m.verdict for m in marks}
    assert (
        verdicts["aphe"] == "seen" and verdicts["washout"] == "missed" and verdicts["rim"] == "wrongly marked"
    )
    assert verdicts["fill_in"] == "rightly left out"
    assert features.score(marks) == (len(asked) - 2, len(asked))


# --- scheduling --------------------------------------------------------------------------------------


def test_ratings_from_correctness_confidence_and_findings() -> None:
    assert schedule.rating(False, 3) is Rating.Again
    assert [schedule.rating(True, c) for c in (1, 2, 3)] == [Rating.Hard, Rating.Good, Rating.Easy]
    assert schedule.rating(True, 3, features_right=3, features_asked=8) is Rating.Hard


def test_a_missed_case_comes_back_sooner_than_a_sure_right_one() -> None:
    again = schedule.review(None, Rating.Again, NOW)
    easy = schedule.review(None, Rating.Easy, NOW)
    assert NOW < again.due < NOW + timedelta(hours=1) < easy.due
    later = schedule.review(easy.to_json(), Rating.Good, easy.due)
    assert later.due - easy.due > easy.due - NOW  # the interval grows


def test_the_queue_takes_due_cards_mixes_new_ones_and_weights_misses() -> None:
    entries = catalogue.library_cases()
    due_id = entries[0].case_id
    history = schedule.History({due_id: NOW - timedelta(hours=2)}, {}, {})
    picks = Counter(
        schedule.next_case(entries, history, np.random.default_rng(s), now=NOW)[1] for s in range(200)
    )
    assert 0.6 < picks["due"] / 200 < 0.8 and picks["new"] > 0
    nothing_due = schedule.History({due_id: NOW + timedelta(days=3)}, {"D": 5}, {})
    drawn = Counter(
        schedule.next_case(entries, nothing_due, np.random.default_rng(s), now=NOW)[0].category
        for s in range(400)
    )
    share = drawn[Category.D] / 400
    d_cases = sum(e.category is Category.D for e in entries) / len(entries)
    assert share > 2 * d_cases  # a category missed five times comes up far more often
    one = entries[:1]
    assert schedule.next_case(one, nothing_due, np.random.default_rng(0), now=NOW)[1] == "early"


# --- the record -------------------------------------------------------------------------------------


def _attempt(case_id: str, answer: str, truth: str, **kw: object) -> record.AttemptInput:
    return record.AttemptInput(
        case_id=case_id,
        mode=str(kw.pop("mode", "features")),
        phase_set="triphasic",
        answer=Category(answer),
        truth=Category(truth),
        confidence=int(kw.pop("confidence", 2)),  # type: ignore[call-overload]
        **kw,  # type: ignore[arg-type]
    )


def test_attempts_and_cards_round_trip_and_a_rerun_counts_once(url: str) -> None:  # noqa: F811
    engine = store.get_engine(url)
    who = identity.resolve(demo_name="Resident One", environ={})
    assert who is not None
    lid = record.learner_id(engine, who)
    assert record.learner_id(engine, who) == lid
    a = _attempt(
        "library-0-0009",
        "A",
        "A",
        features_marked={"aphe", "washout"},
        features_truth={"aphe", "washout", "capsule"},
        features_asked={"aphe", "washout", "capsule", "rim"},
        note="missed the capsule",
        confidence=3,
    )
    first = record.record(engine, lid, a, when=NOW)
    again = record.record(engine, lid, a, when=NOW + timedelta(seconds=1))  # the same answer, resent
    assert first.stored and not again.stored and again.due == first.due
    wrong = record.record(engine, lid, _attempt("library-0-0020", "A", "D", confidence=3), when=NOW)
    assert wrong.due < first.due and wrong.rating == "Again"
    frame = record.attempts_frame(engine, lid)
    assert (
        list(frame.case_id) == ["library-0-0009", "library-0-0020"] and frame.note[0] == "missed the capsule"
    )
    cards = record.cards_frame(engine, lid)
    assert len(cards) == 2 and list(cards.lapses) == [1, 0]
    history = record.history(engine, lid)
    assert history.category_misses == {"D": 1} and history.feature_misses == {"capsule": 1}
    group = record.group_frame(engine)
    assert "note" not in group.columns and set(group.learner) == {"Resident One"}


def test_twenty_learners_writing_at_once_lose_nothing(url: str) -> None:  # noqa: F811
    engine = store.get_engine(url)
    errors: list[BaseException] = []

    def learn(k: int) -> None:
        try:
            who = identity.resolve(demo_name=f"learner {k}", environ={})
            assert who is not None
            lid = record.learner_id(engine, who)
            for i in range(5):
                record.record(engine, lid, _attempt(f"case-{i % 3}", "A", "AB"[i % 2]))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=learn, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert record.count_attempts(engine) == 100
    group = record.group_frame(engine)
    assert group.groupby("learner").size().tolist() == [5] * 20


# --- progress --------------------------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    rows = [
        ("A", "A", True, 3, "aphe,washout", "aphe,washout", "aphe,capsule,washout"),
        ("D", "A", False, 3, "aphe", "fill_in,peripheral_nodular", "aphe,fill_in,peripheral_nodular"),
        ("D", "D", True, 1, "peripheral_nodular", "fill_in,peripheral_nodular", "fill_in,peripheral_nodular"),
        ("E", "E", True, 2, "", "", ""),
    ]
    return pd.DataFrame(
        [
            {
                "answered_at": pd.Timestamp(NOW) - pd.Timedelta(days=3 - i),
                "truth": t,
                "answer": a,
                "correct": c,
                "confidence": conf,
                "features_marked": m,
                "features_truth": tr,
                "features_asked": asked,
            }
            for i, (t, a, c, conf, m, tr, asked) in enumerate(rows)
        ]
    )


def test_progress_tables_and_streaks() -> None:
    frame = _frame()
    by_category = progress.category_accuracy(frame).set_index("category")
    assert (
        by_category.loc["D haemangioma", "answers"] == 2
        and by_category.loc["D haemangioma", "accuracy"] == 0.5
    )
    by_feature = progress.feature_accuracy(frame).set_index("feature")
    assert by_feature.loc["centripetal fill-in", "missed"] == 2
    assert by_feature.loc["arterial phase hyperenhancement (non-rim)", "wrongly marked"] == 1
    confidence = progress.confidence_table(frame).set_index("confidence")
    assert confidence.loc["sure", "accuracy"] == 0.5 and confidence.loc["unsure", "accuracy"] == 1.0
    assert progress.streaks(frame, NOW.date()) == (4, 2)
    assert progress.streaks(frame, (NOW + timedelta(days=2)).date()) == (0, 2)
    assert progress.when_text(NOW + timedelta(days=3, hours=1), NOW) == "in 3 days"
    over_time = {t.name: list(t.y) for t in progress.features_over_time(frame).data}
    assert over_time["centripetal fill-in"] == [0.0, 0.0]  # missed twice
    assert over_time["washout"] == [100.0]  # marked when present (offered once)


def test_the_group_summary_has_no_notes_and_counts_learners() -> None:
    frame = _frame().assign(learner=["a", "b", "b", "a"])
    categories, findings = progress.group_summary(frame)
    assert categories.iloc[0]["category"] == "D haemangioma" and categories.iloc[0]["learners"] == 1
    assert "note" not in categories.columns and len(findings) > 0


# --- the pages with no configuration at all: demo mode, the default SQLite file -------------------


def test_the_quiz_keeps_a_demo_learners_answers_in_the_default_sqlite_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from livercore.paths import ROOT

    for variable in (store.URL_VARIABLE, identity.HEADER_VARIABLE, identity.EDUCATORS_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    at = AppTest.from_file(str(ROOT / "pages" / "quiz.py"), default_timeout=60)
    at.session_state["learner_demo_name"] = "Dr Demo"
    at.run()
    assert not at.exception
    assert any("demo mode" in c.value for c in at.caption)
    entry = next(e for e in catalogue.library_cases() if e.case_id == at.session_state["quiz_current"][0])
    truth = features.case_truth(entry)
    for box in at.checkbox:
        key = box.key.removeprefix("quiz_feature_").rsplit("_", 1)[0]
        box.set_value(key in truth)
    at.radio(key="quiz_answer_0_0").set_value(entry.category)
    at.radio(key="quiz_confidence_0").set_value(3)
    next(b for b in at.button if b.label == "Check my answer").click().run()
    assert not at.exception
    assert any(s.value.startswith("Correct") for s in at.success)
    assert any("This case comes back" in c.value for c in at.caption)
    shown = at.table[0].value
    assert all(v.startswith("right") for v in shown[""])  # every finding graded right
    path = tmp_path / "data" / "livercore" / "livercore.sqlite"
    assert path.is_file()
    engine = store.get_engine(f"sqlite:///{path}")
    frame = record.group_frame(engine)
    assert list(frame.learner) == ["Dr Demo"] and list(frame.case_id) == [entry.case_id]
    store.dispose(f"sqlite:///{path}")
    # the stepwise mode: one category per phase, then the reveal
    at.button(key="quiz_next").click().run()
    at.radio(key="quiz_mode").set_value("stepwise").run()
    for step in range(2):
        at.radio(key=f"quiz_answer_1_{step}").set_value(Category.C)
        next(b for b in at.button if b.label == "Show the next phase").click().run()
        assert len(at.get("image")) == step + 2
    at.radio(key="quiz_answer_1_2").set_value(Category.A)
    next(b for b in at.button if b.label == "Check my answer").click().run()
    assert not at.exception
    assert "after unenhanced C" in "\n".join(m.value for m in at.markdown)
