"""The study's vocabulary in one place: categories, phases, display windows, phase-models.

Everything that names a category, a phase or a phase-model imports it from here
(Yasaka et al., Radiology 2018; docs: ../shared/docs/paper.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    """The five categories of liver mass of the study (paper Table 1)."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"

    @property
    def info(self) -> CategoryInfo:
        return CATEGORY_INFO[self]

    @property
    def output_index(self) -> int:
        """Position of the category in a network's output vector (A=0 ... E=4)."""
        return CATEGORIES.index(self)


@dataclass(frozen=True)
class CategoryInfo:
    name: str
    description: str
    clinical_score: int  # the paper's ROC score: malignant A/B = 4 ... cyst E = 1
    colour: str  # display colour (hex), colour-blind-safe Okabe-Ito palette


CATEGORY_INFO: dict[Category, CategoryInfo] = {
    Category.A: CategoryInfo(
        "classic HCC",
        "hepatocellular carcinoma with the classic pattern: arterial-phase hyperenhancement "
        "and washout in the delayed phase, often with a capsule",
        4,
        "#D55E00",
    ),
    Category.B: CategoryInfo(
        "other malignant",
        "intrahepatic cholangiocarcinoma, combined HCC-cholangiocarcinoma and metastases "
        "(colorectal, pancreatic neuroendocrine, other)",
        4,
        "#CC79A7",
    ),
    Category.C: CategoryInfo(
        "indeterminate or rare benign",
        "early HCC, dysplastic nodules, arterial-phase hyperenhancing nodules and "
        "pseudolesions; rare benign masses other than haemangioma and cyst",
        3,
        "#E69F00",
    ),
    Category.D: CategoryInfo(
        "haemangioma",
        "peripheral nodular enhancement following the blood pool with centripetal fill-in, "
        "or uniform flash filling",
        2,
        "#0072B2",
    ),
    Category.E: CategoryInfo(
        "cyst",
        "water attenuation (0-20 HU) in every phase, no enhancement, sharp border, no wall",
        1,
        "#009E73",
    ),
}

CATEGORIES: tuple[Category, ...] = tuple(Category)

# Subtypes per category (phantom.md section 3; paper Table 1). The strings are stable: they
# appear in manifests, prediction CSVs and metrics. Category C's hyper/hypovascular split is
# reported separately in Table 3.
SUBTYPES: dict[Category, tuple[str, ...]] = {
    Category.A: ("histology", "imaging"),
    Category.B: (
        "icc",
        "combined_hcc_icc",
        "colorectal_metastasis",
        "net_metastasis",
        "other_malignant",
    ),
    Category.C: ("hypervascular", "hypovascular", "other_benign"),
    Category.D: ("typical", "flash_filling"),
    Category.E: ("simple_cyst",),
}
SUBTYPE_LABELS: dict[str, str] = {
    "histology": "classic HCC, histology-proven",
    "imaging": "classic HCC, imaging diagnosis",
    "icc": "intrahepatic cholangiocarcinoma",
    "combined_hcc_icc": "combined HCC-cholangiocarcinoma",
    "colorectal_metastasis": "colorectal metastasis",
    "net_metastasis": "pancreatic NET metastasis",
    "other_malignant": "other malignant",
    "hypervascular": "hypervascular nodule or pseudolesion",
    "hypovascular": "hypovascular nodule (early HCC, dysplastic)",
    "other_benign": "rare benign (adenoma, angiomyolipoma)",
    "typical": "haemangioma, peripheral nodular",
    "flash_filling": "haemangioma, flash-filling",
    "simple_cyst": "simple cyst",
}
MALIGNANT: frozenset[Category] = frozenset({Category.A, Category.B})


def clinical_score(category: Category | str) -> int:
    """The paper's clinical score for ROC analysis: A and B 4, C 3, D 2, E 1."""
    return Category(category).info.clinical_score


@dataclass(frozen=True)
class Window:
    """A CT display window: level and width in HU."""

    level: float
    width: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2


class Phase(StrEnum):
    """The three phases of the triphasic protocol, in acquisition order."""

    UNENHANCED = "unenhanced"
    ARTERIAL = "arterial"
    DELAYED = "delayed"

    @property
    def window(self) -> Window:
        """The paper's display window for this phase (the network's input window)."""
        return PHASE_WINDOWS[self]

    @property
    def short(self) -> str:
        return {"unenhanced": "U", "arterial": "A", "delayed": "D"}[self.value]


PHASES: tuple[Phase, ...] = tuple(Phase)

# The paper: unenhanced L40/W250; arterial and delayed L45/W290.
PHASE_WINDOWS: dict[Phase, Window] = {
    Phase.UNENHANCED: Window(40, 250),
    Phase.ARTERIAL: Window(45, 290),
    Phase.DELAYED: Window(45, 290),
}
# A narrow window for looking at subtle parenchymal differences (viewer preset, not a network input).
LIVER_WINDOW = Window(90, 150)

# Injection-relative acquisition times (s) of the protocol: bolus tracking puts the late
# arterial phase about 35 s after injection start; the delayed phase is fixed at 180 s.
PHASE_DELAY_S: dict[Phase, float] = {
    Phase.UNENHANCED: 0.0,
    Phase.ARTERIAL: 35.0,
    Phase.DELAYED: 180.0,
}


@dataclass(frozen=True)
class PhaseModel:
    """One of the paper's five networks: which phases it sees, in channel order."""

    name: str
    label: str
    phases: tuple[Phase, ...]

    @property
    def in_channels(self) -> int:
        return len(self.phases)


PHASE_MODELS: dict[str, PhaseModel] = {
    m.name: m
    for m in (
        PhaseModel("triphasic", "Triphasic", (Phase.UNENHANCED, Phase.ARTERIAL, Phase.DELAYED)),
        PhaseModel("art_del", "Arterial + delayed", (Phase.ARTERIAL, Phase.DELAYED)),
        PhaseModel("unenhanced", "Unenhanced", (Phase.UNENHANCED,)),
        PhaseModel("arterial", "Arterial", (Phase.ARTERIAL,)),
        PhaseModel("delayed", "Delayed", (Phase.DELAYED,)),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(PHASE_MODELS)


@dataclass(frozen=True)
class CamMethod:
    """A class activation map method the app offers (livercore.explain computes them)."""

    name: str
    has_target: bool  # whether the map is computed for one chosen category
    description: str  # what the map shows, for captions

    def caption(self, target: str | None) -> str:
        """What the map's colours mean, true to the method (EigenCAM has no category)."""
        if not self.has_target or target is None:
            return f"{self.name}: {self.description}. Dark blue = weak, dark red = strong activation."
        return (
            f"{self.name} for {target}: {self.description}. Dark blue = no evidence, dark red = the "
            f"strongest evidence for {target}."
        )


CAM_METHODS: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod(
            "GradCAM",
            True,
            "the last convolutional layer's feature maps weighted by how much each raises the "
            "category's score (Selvaraju et al., ICCV 2017)",
        ),
        CamMethod(
            "GradCAM++",
            True,
            "like Grad-CAM, with pixel-wise weights that separate several regions of evidence "
            "(Chattopadhyay et al., WACV 2018)",
        ),
        CamMethod(
            "EigenCAM",
            False,
            "the first principal component of the last convolutional layer's activations: where "
            "the network's features are strongest, for no particular category (Muhammad & Yeasin, "
            "IJCNN 2020)",
        ),
    )
}

DISCLAIMER = (
    "For teaching and research only: not a medical device, not for diagnosis. The bundled "
    "models were trained on synthetic triphasic CT from the livercore phantom, not on patients."
)
