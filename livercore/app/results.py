"""The results browser's figures and teaching: ROC curves, confusion matrices and the cases
behind a cell, the paper's teaching points with our evidence, the pointing game and the phase
contributions, all from a study directory (livercore.study_folder) and the paper's numbers
(livercore.paper). Tables 2 and 3 are livercore.study_tables'; the page only draws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from livercore import evaluate, paper
from livercore.study_folder import Study
from livercore.study_tables import SENSITIVITY_ROWS
from livercore.vocab import CATEGORIES, MODEL_NAMES, PHASE_MODELS, PHASES, SUBTYPE_LABELS, Category, Phase

Score = Literal["clinical", "probability"]


def largest_confusion(counts: pd.DataFrame) -> tuple[Category, Category]:
    """(reference, predicted) of the largest off-diagonal cell of a confusion matrix (the first
    such cell in reading order on ties; A read as C when there is no error at all)."""
    values = counts.to_numpy(float).copy()
    np.fill_diagonal(values, -1)
    if values.max() <= 0:
        return Category.A, Category.C
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return Category(counts.index[row]), Category(counts.columns[col])


# --- number formats ----------------------------------------------------------------------------


# --- Table 2, Table 3, AUC -----------------------------------------------------------------------


# --- ROC curves ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRoc:
    session: int
    fpr: np.ndarray  # (t,)
    tpr: np.ndarray  # (t,)
    auc: float


def session_rocs(study: Study, model: str, *, score: Score = "clinical") -> list[SessionRoc]:
    """ROC curve and AUC of A-B vs C-E for every session of `model`."""
    df = study.predictions[study.predictions["model"] == model]
    out = []
    for session, group in df.groupby("session"):
        try:
            roc = evaluate.roc_malignant(group, score=score)
        except ValueError:  # a cohort without both malignant and benign lesions
            continue
        out.append(SessionRoc(int(session), roc.fpr, roc.tpr, float(roc.auc)))
    return out


def median_roc(rocs: list[SessionRoc]) -> SessionRoc | None:
    """The session whose AUC is the median (the lower middle one for an even count)."""
    if not rocs:
        return None
    return sorted(rocs, key=lambda r: (r.auc, r.session))[(len(rocs) - 1) // 2]


def roc_figure(study: Study, *, score: Score = "clinical", height: int = 340) -> go.Figure:
    """One panel per model: every session's ROC curve thin, the median-AUC session bold, the
    chance diagonal, and the paper's AUC in the panel title."""
    theirs = paper.auc().set_index("model")
    models = study.models
    titles = []
    panels = []
    for name in models:
        rocs = session_rocs(study, name, score=score)
        best = median_roc(rocs)
        panels.append((rocs, best))
        ours = f"ours {best.auc:.2f}" if best else "ours —"
        reported = f"paper {theirs.loc[name, 'median']:.2f}" if name in theirs.index else "paper —"
        titles.append(f"<b>{PHASE_MODELS[name].label}</b><br>AUC {ours} · {reported}")
    fig = make_subplots(rows=1, cols=max(len(models), 1), subplot_titles=titles, shared_yaxes=True)
    for col, (name, (rocs, best)) in enumerate(zip(models, panels, strict=True), start=1):
        colour = "#0072B2"
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                line={"color": "#BBBBBB", "dash": "dot", "width": 1},
                hoverinfo="skip",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        for roc in rocs:
            bold = best is not None and roc.session == best.session
            fig.add_trace(
                go.Scatter(
                    x=roc.fpr,
                    y=roc.tpr,
                    mode="lines+markers" if bold else "lines",
                    line={"color": colour, "width": 3.5 if bold else 1},
                    opacity=1.0 if bold else 0.45,
                    name=f"session {roc.session}" + (" (median AUC)" if bold else ""),
                    hovertemplate=(
                        f"{PHASE_MODELS[name].label}, session {roc.session} (AUC {roc.auc:.2f})<br>"
                        "1 - specificity %{x:.2f}, sensitivity %{y:.2f}<extra></extra>"
                    ),
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="1 - specificity", range=[-0.02, 1.02], row=1, col=col, fixedrange=True)
    fig.update_yaxes(title_text="sensitivity (A-B)", range=[-0.02, 1.02], row=1, col=1, fixedrange=True)
    fig.update_yaxes(fixedrange=True)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=height, margin={"l": 0, "r": 10, "t": 60, "b": 0})
    return fig


# --- confusion matrices and the cases behind a cell ----------------------------------------------


def _model_rows(study: Study, model: str, session: int | None) -> pd.DataFrame:
    df = study.predictions[study.predictions["model"] == model]
    return df if session is None else df[df["session"] == session]


def confusion_counts(study: Study, model: str, session: int | None = None) -> pd.DataFrame:
    """(5, 5) counts, reference category in rows and prediction in columns; one session, or all
    sessions pooled (each test case counted once per session) when session is None."""
    return evaluate.confusion(_model_rows(study, model, session))


def confusion_figure(counts: pd.DataFrame, *, normalize: bool, height: int = 380) -> go.Figure:
    """A confusion-matrix heatmap: counts, or fractions of each reference row (with the counts)."""
    values = counts.to_numpy(float)
    totals = values.sum(axis=1, keepdims=True)
    fractions = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    z = fractions if normalize else values
    text = [
        [f"{f * 100:.0f} %<br>({int(n)})" if normalize else f"{int(n)}" for f, n in zip(fr, vr, strict=True)]
        for fr, vr in zip(fractions, values, strict=True)
    ]
    labels = [f"{c.value} {c.info.name}" for c in CATEGORIES]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            zmin=0,
            zmax=1 if normalize else max(float(values.max()), 1.0),
            colorscale="Blues",
            text=text,
            texttemplate="%{text}",
            hovertemplate="reference %{y} → predicted %{x}: %{text}<extra></extra>",
            colorbar={"title": "share of row" if normalize else "cases", "thickness": 12},
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        xaxis={"title": "predicted", "side": "top", "fixedrange": True},
        yaxis={"title": "reference standard", "autorange": "reversed", "fixedrange": True},
    )
    return fig


def cell_cases(
    study: Study, model: str, session: int | None, true: Category | str, predicted: Category | str
) -> pd.DataFrame:
    """The test cases behind one confusion cell: reference `true`, read as `predicted`.

    One row per case: the sessions in which it fell in that cell (one, or several when session
    is None and the sessions are pooled), how many, and the model's P(reference) and
    P(predicted) in % (one column for a diagonal cell), the mean over those sessions. Sorted by
    how often, then by case id.
    """
    t, p = Category(true).value, Category(predicted).value
    df = _model_rows(study, model, session)
    hits = df[(df["category"] == t) & (df["predicted"] == p)]
    # A diagonal cell (read correctly) has one probability to show, not the same column twice.
    probabilities = [t] if t == p else [t, p]
    columns = ["case_id", "subtype", "sessions", "n sessions", *(f"P({c}) %" for c in probabilities)]
    if hits.empty:
        return pd.DataFrame(columns=columns)
    grouped = (
        hits.groupby("case_id", sort=False)
        .agg(
            subtype=("subtype", "first"),
            sessions=("session", lambda s: ", ".join(str(int(v)) for v in sorted(s))),
            n=("session", "size"),
            **{f"P({c}) %": (f"p_{c}", "mean") for c in probabilities},
        )
        .reset_index()
    )
    grouped["subtype"] = grouped["subtype"].map(lambda s: SUBTYPE_LABELS.get(str(s), str(s)))
    for c in probabilities:
        grouped[f"P({c}) %"] = (grouped[f"P({c}) %"] * 100).round(0)
    grouped = grouped.rename(columns={"n": "n sessions"})
    grouped = grouped.sort_values(["n sessions", "case_id"], ascending=[False, True], kind="stable")
    return grouped[columns].reset_index(drop=True)


# --- the paper's teaching points, with our evidence ---------------------------------------------


@dataclass(frozen=True)
class Tally:
    """How many lesions of one kind a model read as one category, per session."""

    counts: tuple[int, ...]  # per session
    total: int  # lesions of that kind in the test set

    @property
    def median(self) -> float:
        return float(np.median(self.counts)) if self.counts else float("nan")

    def __str__(self) -> str:
        """The median count of `total`, with its range over sessions when it varies: "5/21 (3-8)"."""
        if not self.counts or not self.total:
            return "—"
        low, high = min(self.counts), max(self.counts)
        return f"{self.median:g}/{self.total}" + (f" ({low}-{high})" if low != high else "")


def misread(
    study: Study, model: str, true: Category | str, predicted: Category | str, *, subtype: str | None = None
) -> Tally:
    """How many test lesions of category `true` (and `subtype`, if given) `model` read as
    `predicted`, in each session."""
    df = study.predictions[
        (study.predictions["model"] == model) & (study.predictions["category"] == Category(true).value)
    ]
    if subtype is not None:
        df = df[df["subtype"] == subtype]
    sessions = study.sessions(model)
    counts = tuple(
        int((df.loc[df["session"] == s, "predicted"] == Category(predicted).value).sum()) for s in sessions
    )
    total = int(df["case_id"].nunique())
    return Tally(counts, total)


@dataclass(frozen=True)
class TeachingPoint:
    title: str
    paper: str  # the paper's point in plain words
    ours: str  # our study's evidence, computed
    shown: bool | None  # whether our study shows the same pattern (None: not a testable claim)


def _sens(study: Study, model: str, row: str) -> float:
    s = study.summary["models"].get(model, {}).get("sensitivity", {}).get(row, {})
    value = s.get("median")
    return float("nan") if value is None else float(value)


def _names(models: list[str]) -> str:
    labels = [PHASE_MODELS[m].label.lower() for m in models]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


# What the phase a single-phase model lacks shows, in a reader's words.
WHY = {"arterial": "washout and capsule", "delayed": "arterial hyperenhancement"}


def _phase_confusion_point(study: Study, single: str) -> TeachingPoint:
    c = paper.CONFUSIONS[single]
    other_c, lacking = c.subtype, c.lacking
    a_as_c = misread(study, single, Category.A, Category.C)
    c_as_a = misread(study, single, Category.C, Category.A, subtype=other_c)
    n_sessions = len(a_as_c.counts)
    title = f"The {single} phase alone confuses classic HCC with {other_c} category-C lesions"
    reported = (
        f"In the paper, the {single} model read {c.a_as_c}/{c.n_a} classic HCCs as "
        f"category C and {c.c_as_a}/{c.n_c} {other_c} category-C lesions as classic HCC. "
        f"Telling them apart needs the {lacking} phase ({WHY[single]})."
    )
    ours = (
        f"Our {single} model, median (range) over {n_sessions} sessions: {a_as_c} classic HCCs read "
        f"as C, {c_as_a} {other_c} C lesions read as A."
    )
    shown: bool | None = None
    if "triphasic" in study.models and single != "triphasic":
        tri_a = misread(study, "triphasic", Category.A, Category.C)
        tri_c = misread(study, "triphasic", Category.C, Category.A, subtype=other_c)
        ours += f" With all three phases (triphasic model): {tri_a} and {tri_c}."
        single_total, tri_total = a_as_c.median + c_as_a.median, tri_a.median + tri_c.median
        shown = single_total > tri_total
        paper_share = (c.a_as_c + c.c_as_a) / (c.n_a + c.n_c)
        ours_share = single_total / max(a_as_c.total + c_as_a.total, 1)
        if not shown:
            ours += (
                f" Our phantom does not reproduce this confusion: the {single} model already separates them."
            )
        elif ours_share < paper_share / 2:
            ours += (
                f" The confusion is milder than in the paper (the phantom's lesions are more typical than "
                f"patients'), and the {lacking} phase removes it."
            )
        else:
            ours += f" The same confusion, and the {lacking} phase removes most of it."
    return TeachingPoint(title, reported, ours, shown)


def _b_and_e_point(study: Study) -> TeachingPoint:
    b_low, b_high = paper.b_sensitivity_range()
    b = {m: _sens(study, m, "B") for m in study.models}
    e = {m: _sens(study, m, "E") for m in study.models}
    lowest = [
        m
        for m in study.models
        if not np.isnan(b[m])
        and b[m]
        <= min(_sens(study, m, c.value) for c in CATEGORIES if not np.isnan(_sens(study, m, c.value)))
    ]
    b_text = ", ".join(f"{PHASE_MODELS[m].label.lower()} {b[m]:.2f}" for m in study.models)
    e_text = ", ".join(f"{PHASE_MODELS[m].label.lower()} {e[m]:.2f}" for m in study.models)
    others = [m for m in study.models if m not in lowest]
    if not lowest:
        verdict = (
            "In our phantom, B is not the hardest category for any model: its metastases and "
            "cholangiocarcinomas are more typical than the paper's patients."
        )
    else:
        plural = "s" if len(lowest) > 1 else ""
        verdict = f"B is the hardest category for the {_names(lowest)} model{plural}"
        verdict += (
            f"; the {_names(others)} model{'s' if len(others) > 1 else ''} find most B lesions in our phantom."
            if others
            else ", as in the paper."
        )
    ours = f"Our sensitivity for B (median over sessions): {b_text}; for cysts: {e_text}. {verdict}"
    shown = bool(lowest) and all(v >= 0.9 for v in e.values() if not np.isnan(v))
    return TeachingPoint(
        "Category B is hard for every model; cysts are easy for every model",
        "In the paper, sensitivity for other malignant lesions (B: cholangiocarcinoma, combined "
        f"HCC-cholangiocarcinoma, metastases) was only {b_low:.2f}-{b_high:.2f}, whatever "
        "the phases: they are few (9 in the test set) and varied. Cysts (water attenuation, no "
        "enhancement) were recognised by every model.",
        ours,
        shown,
    )


def _phases_point(study: Study) -> TeachingPoint:
    theirs = paper.accuracy().query("split == 'test'").set_index("model")["median"]
    ours = {m: study.summary["models"][m]["accuracy"]["median"] for m in study.models}
    order = sorted(ours, key=lambda m: -ours[m])
    text = ", ".join(f"{PHASE_MODELS[m].label.lower()} {ours[m]:.2f}" for m in order)
    paper_text = ", ".join(
        f"{PHASE_MODELS[m].label.lower()} {theirs[m]:.2f}"
        for m in sorted(theirs.index, key=lambda m: -theirs[m])
    )
    combined = {"triphasic", "art_del"}
    single = [m for m in study.models if m not in combined]
    top_two = set(order[:2]) == combined if combined <= set(ours) else False
    weakest = order[-1] == "unenhanced" if "unenhanced" in ours else False
    verdict = []
    verdict.append(
        "As in the paper, the models that combine phases beat every single-phase model."
        if top_two
        else "Unlike the paper, a single-phase model matches a multiphase one here."
    )
    if "unenhanced" in ours:
        verdict.append(
            "The unenhanced model is the weakest, as in the paper."
            if weakest
            else "The unenhanced model is not the weakest here."
        )
    return TeachingPoint(
        "Each phase adds information; the unenhanced phase alone carries least",
        "In the paper, test accuracy fell from the triphasic model to single phases: "
        f"{paper_text}. Enhancement patterns are what tell the categories apart, so the "
        "unenhanced phase alone is weakest.",
        f"Our test accuracy (median over sessions): {text}. " + " ".join(verdict),
        top_two and (weakest or not single),
    )


def _limits_point(study: Study) -> TeachingPoint:
    from scipy.stats import binomtest

    model = "triphasic" if "triphasic" in study.models else study.models[0]
    s = study.summary["models"][model]["sensitivity"]["B"]
    n, total = int(s["n_correct"]), int(s["n_total"])
    if total:
        ci = binomtest(n, total).proportion_ci(confidence_level=0.95, method="exact")
        ours = (
            f"Our test set has {total} category-B lesions too: the {PHASE_MODELS[model].label.lower()} "
            f"model's median session found {n} of them, a sensitivity of {n / total:.2f} whose exact 95 % "
            f"confidence interval runs from {ci.low:.2f} to {ci.high:.2f}; one lesion more or less moves it "
            f"by {1 / total:.2f}. Our models also see one 70 x 70 section per phase and no history."
        )
    else:
        ours = "Our test set has no category-B lesions."
    return TeachingPoint(
        "What the network cannot know",
        "The authors name the study's limits: the network sees one section per phase, shrunk to "
        "70 x 70 pixels (a radiologist scrolls through the whole lesion); it has no clinical history "
        "(cirrhosis, a known primary tumour, tumour markers); and category B had few cases.",
        ours,
        None,
    )


def teaching_points(study: Study) -> list[TeachingPoint]:
    """The paper's teaching points (paper.md) in plain words, each with our study's evidence."""
    points = []
    if "arterial" in study.models:
        points.append(_phase_confusion_point(study, "arterial"))
    if "delayed" in study.models:
        points.append(_phase_confusion_point(study, "delayed"))
    points.append(_b_and_e_point(study))
    points.append(_phases_point(study))
    if (contribution := _contribution_point(study)) is not None:
        points.append(contribution)
    points.append(_limits_point(study))
    return points


# --- where the models look: the pointing game -----------------------------------------------------


POINTING_TEXT = (
    "**The pointing game.** For every test lesion, each shipped model's Grad-CAM map (for the "
    "category it predicted) is compared with where the lesion really is, which the phantom knows "
    "exactly. The number is the share of the map's energy that falls inside the lesion. A model "
    "that ignored the lesion and spread its attention evenly would score the lesion's share of "
    "the crop's area (the chance level: the crop is a fixed 64 mm field, so about 0.05 for a "
    "16 mm nodule and 0.3 for a 40 mm mass). Well "
    "above chance means the evidence comes from the lesion; near or below chance means the model "
    "looked elsewhere: at the liver around it (which the category criteria also compare "
    "against) or at something it should not use."
)


def pointing_summary(study: Study) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(energy, chance): median share of Grad-CAM energy inside the lesion, and median lesion
    area share (the chance level), per model (rows) and category (columns, plus "all"); None
    when the study has no pointing_game.csv. The same medians as livercore.rationale.summarise."""
    table = study.pointing
    if table is None or table.empty:
        return None
    order = [m for m in MODEL_NAMES if m in set(table["model"])]

    def pivot(column: str) -> pd.DataFrame:
        by_cat = table.pivot_table(index="model", columns="category", values=column, aggfunc="median")
        by_cat["all"] = table.groupby("model")[column].median()
        by_cat = by_cat.reindex(
            index=order, columns=[c.value for c in CATEGORIES if c.value in by_cat] + ["all"]
        )
        by_cat.index = [PHASE_MODELS[m].label for m in by_cat.index]
        return by_cat

    return pivot("energy_in_lesion"), pivot("lesion_area_share")


def pointing_figure(energy: pd.DataFrame, chance: pd.DataFrame, *, height: int = 300) -> go.Figure:
    """Models x categories: median energy inside the lesion, each cell with its chance level."""
    z = energy.to_numpy(float)
    text = [
        [f"{e:.2f}<br>chance {c:.2f}" for e, c in zip(er, cr, strict=True)]
        for er, cr in zip(z, chance.to_numpy(float), strict=True)
    ]
    columns = ["all categories" if c == "all" else f"{c} {Category(c).info.name}" for c in energy.columns]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=list(energy.index),
            zmin=0,
            zmax=1,
            colorscale="Greens",
            text=text,
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: %{text}<extra></extra>",
            colorbar={"title": "energy in lesion", "thickness": 12},
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        xaxis={"side": "top", "fixedrange": True},
        yaxis={"autorange": "reversed", "fixedrange": True},
    )
    return fig


# --- which phase carries the decision -------------------------------------------------------------

CONTRIBUTION_TEXT = (
    "**Which phase carries the decision.** A Grad-CAM map of a multiphase model is one spatial "
    "map: it says where, not in which phase. Here each phase of the triphasic and arterial + "
    "delayed models is given its Shapley value for the probability of the lesion's true "
    "category: how much showing that phase, rather than a flat image of its mean brightness, "
    "raises the probability, averaged over every order of revealing the phases. Each cell is a "
    "phase's share of the positive evidence, from the mean over the test lesions of that group "
    "(shipped model, test cohort)."
)


def contribution_groups(table: pd.DataFrame) -> pd.Series:
    """Each row's group: its category, category C split by vascularity (the paper's story
    differs for hypervascular and hypovascular nodules)."""
    split = table["category"].eq("C") & table["subtype"].isin(["hypervascular", "hypovascular"])
    return table["category"].where(~split, "C_" + table["subtype"].astype(str))


def summarise_contributions(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and group (rows of livercore.rationale.phase_contribution_table): the mean
    Shapley value of each phase (``shapley_<phase>``), each phase's share of the positive mean
    evidence (``share_<phase>``, NaN for a phase the model does not see) and the case count."""
    columns = [f"shapley_{p.value}" for p in PHASES]
    grouped = (
        table.assign(group=contribution_groups(table))
        .groupby(["model", "group"], sort=False)
        .agg(cases=("case_id", "count"), **{c: (c, "mean") for c in columns})
        .reset_index()
    )
    positive = grouped[columns].clip(lower=0)
    total = positive.sum(axis=1).replace(0, np.nan)
    for p in PHASES:
        grouped[f"share_{p.value}"] = positive[f"shapley_{p.value}"] / total
    order = {g: i for i, g in enumerate(SENSITIVITY_ROWS)}
    models = {m: i for i, m in enumerate(MODEL_NAMES)}
    return grouped.sort_values(
        ["model", "group"], key=lambda col: col.map(models if col.name == "model" else order)
    ).reset_index(drop=True)


def contribution_summary(study: Study) -> pd.DataFrame | None:
    """summarise_contributions of the study's phase_contribution.csv; None when it has none."""
    table = study.contributions
    if table is None or table.empty:
        return None
    needed = {"case_id", "category", "subtype", "model", *(f"shapley_{p.value}" for p in PHASES)}
    if not needed <= set(table.columns):
        return None
    return summarise_contributions(table)


def contribution_figure(summary: pd.DataFrame, *, height: int = 320) -> go.Figure:
    """One heatmap panel per model: groups (rows) x phases (columns), each phase's share of the
    evidence in % with its mean Shapley value in probability points."""
    models = list(dict.fromkeys(summary["model"]))
    fig = make_subplots(
        1, len(models), subplot_titles=[PHASE_MODELS[m].label for m in models], horizontal_spacing=0.04
    )
    for k, model in enumerate(models, start=1):
        rows = summary[summary["model"] == model]
        phases = [p for p in PHASES if p in PHASE_MODELS[model].phases]
        z = rows[[f"share_{p.value}" for p in phases]].to_numpy(float)
        points = rows[[f"shapley_{p.value}" for p in phases]].to_numpy(float)
        text = [
            [
                f"{s * 100:.0f} %<br>({v * 100:+.0f})" if np.isfinite(s) else "—"
                for s, v in zip(zr, pr, strict=True)
            ]
            for zr, pr in zip(z, points, strict=True)
        ]
        labels = [
            f"{SENSITIVITY_ROWS.get(g, g)} ({n})" for g, n in zip(rows["group"], rows["cases"], strict=True)
        ]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[p.value for p in phases],
                y=labels,
                zmin=0,
                zmax=1,
                colorscale="Purples",
                text=text,
                texttemplate="%{text}",
                hovertemplate="%{y}, %{x} phase: %{text}<extra></extra>",
                showscale=k == len(models),
                colorbar={"title": "share", "thickness": 12},
            ),
            1,
            k,
        )
        # the groups are the same rows in every panel: labelled once, on the left
        fig.update_yaxes(autorange="reversed", fixedrange=True, showticklabels=k == 1, row=1, col=k)
        fig.update_xaxes(fixedrange=True, row=1, col=k)
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 40, "b": 0})
    return fig


def _contribution_point(study: Study) -> TeachingPoint | None:
    summary = contribution_summary(study)
    if summary is None or "triphasic" not in set(summary["model"]):
        return None
    rows = summary[summary["model"] == "triphasic"].set_index("group")

    def shares(group: str) -> str:
        if group not in rows.index:
            return f"no {SENSITIVITY_ROWS[group]} lesions"
        r = rows.loc[group]
        parts = sorted(PHASES, key=lambda p: -float(np.nan_to_num(r[f"share_{p.value}"])))
        return f"{SENSITIVITY_ROWS[group]}: " + ", ".join(
            f"{p.value} {float(r[f'share_{p.value}']) * 100:.0f} %" for p in parts
        )

    def share(group: str, phase: Phase) -> float:
        return float(rows.loc[group, f"share_{phase.value}"]) if group in rows.index else float("nan")

    a_arterial, a_delayed = share("A", Phase.ARTERIAL), share("A", Phase.DELAYED)
    hypo_arterial = share("C_hypovascular", Phase.ARTERIAL)
    both = a_arterial >= 0.2 and a_delayed >= 0.2
    verdict = (
        "As the paper's story says, classic HCC rests on both the arterial and the delayed phase"
        if both
        else "Unlike the paper's story, classic HCC does not rest on both the arterial and the delayed phase"
    )
    verdict += (
        ", and the arterial phase leads for hypovascular category-C nodules (their lack of enhancement "
        "is what sets them apart)."
        if hypo_arterial >= 0.5
        else ", but the arterial phase does not lead for hypovascular category-C nodules."
    )
    return TeachingPoint(
        "Which phase the triphasic model's decision rests on",
        "The paper infers the phases' roles from its single-phase models: the arterial phase shows "
        "vascularity (arterial hyperenhancement) and the delayed phase washout, so classic HCC needs "
        "both; without the delayed phase it is confused with hypervascular category-C lesions, "
        "without the arterial phase with hypovascular ones.",
        "Share of the evidence for the true category, per phase (Shapley values, shipped triphasic "
        f"model): {'; '.join(shares(g) for g in ('A', 'C_hypervascular', 'C_hypovascular'))}. "
        f"{verdict} (Counted as shown when the arterial and the delayed phase each carry at least "
        "20 % for classic HCC and the arterial phase at least half for hypovascular C.)",
        both and hypo_arterial >= 0.5,
    )


# --- calibration (livercore.calibration: the temperatures fitted by `livercore study ship`) -------

CALIBRATION_TEXT = (
    "**Are the probabilities honest?** A model is calibrated when, of the lesions it gives 80 %, "
    "about 80 % are right. Each phase-model's temperature was fitted on the validation cohort "
    "(never on the test cohort) and the app shows the calibrated probabilities. The expected "
    "calibration error (ECE) is the gap between confidence and accuracy, averaged over 15 "
    "confidence bins weighted by their cases: 0 is perfect."
)


def calibration_table(report: dict) -> pd.DataFrame:
    """One row per model of a study's calibration report (calibration.study_calibration): its
    temperature, test accuracy and ECE before and after on validation and test."""
    rows = []
    for name, entry in report["models"].items():
        test, validation = entry.get("test", {}), entry.get("validation", {})
        rows.append(
            {
                "model": PHASE_MODELS[name].label,
                "temperature": f"{entry['temperature']:.2f}",
                "test accuracy": f"{test['accuracy']:.2f}" if "accuracy" in test else "—",
                "ECE, validation: network's own -> calibrated": (
                    f"{validation['ece_before']:.3f} -> {validation['ece_after']:.3f} (n = {validation['n']})"
                    if validation
                    else "—"
                ),
                "ECE, test: network's own -> calibrated": (
                    f"{test['ece_before']:.3f} -> {test['ece_after']:.3f} (n = {test['n']})" if test else "—"
                ),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def reliability_figure(entry: dict, *, height: int = 340) -> go.Figure:
    """A model's reliability diagram on the test cohort: accuracy against confidence per bin,
    the network's own and calibrated, with the diagonal of perfect calibration."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="perfect")
    )
    test = entry.get("test", {})
    for key, label, colour in (
        ("reliability_before", "network's own", "#9e9e9e"),
        ("reliability_after", "calibrated (shown in the app)", "#1565c0"),
    ):
        diagram = test.get(key)
        if not diagram:
            continue
        bins = [b for b in diagram["bins"] if b["count"]]
        fig.add_trace(
            go.Scatter(
                x=[b["confidence"] for b in bins],
                y=[b["accuracy"] for b in bins],
                mode="lines+markers",
                marker={"size": [6 + 14 * np.sqrt(b["count"] / diagram["n"]) for b in bins], "color": colour},
                line={"color": colour},
                name=f"{label}, ECE {diagram['ece']:.3f}",
                customdata=[b["count"] for b in bins],
                hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} cases)<extra></extra>",
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "confidence (top-category probability)", "range": [0, 1.02]},
        yaxis={"title": "accuracy", "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
