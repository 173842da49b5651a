"""A short loss summary read from an analysis' ORD outputs: AAL and losses at a few return periods."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: ORD codes: ALT SampleType 1 is the analytical mean; EPT EPCalc 2 is full uncertainty,
#: EPType 1 the occurrence (OEP) and 3 the aggregate (AEP) exceedance probability.
ANALYTICAL_MEAN = 1
FULL_UNCERTAINTY = 2
EP_TYPES = {1: "OEP", 3: "AEP"}
RETURN_PERIODS = (10, 50, 100, 250, 500)


@dataclass(frozen=True)
class PerspectiveSummary:
    perspective: str  # gul, il, ri
    aal: float | None
    #: (EP type, return period) -> loss
    losses: dict[tuple[str, int], float]


def summarise(output: Path, summary_set: int = 1) -> list[PerspectiveSummary]:
    """Portfolio totals (all summary ids) of ``<perspective>_S<summary_set>_palt/ept.csv`` in ``output``."""
    summaries = []
    for perspective in ("gul", "il", "ri"):
        palt = output / f"{perspective}_S{summary_set}_palt.csv"
        ept = output / f"{perspective}_S{summary_set}_ept.csv"
        if not palt.is_file() and not ept.is_file():
            continue
        aal = None
        if palt.is_file():
            alt = pd.read_csv(palt)
            aal = float(alt.loc[alt["SampleType"] == ANALYTICAL_MEAN, "MeanLoss"].sum())
        losses: dict[tuple[str, int], float] = {}
        if ept.is_file():
            table = pd.read_csv(ept)
            table = table[(table["EPCalc"] == FULL_UNCERTAINTY) & table["EPType"].isin(list(EP_TYPES))]
            totals = table.groupby(["EPType", "ReturnPeriod"])["Loss"].sum()
            for (ep_type, period), loss in totals.items():
                if int(period) in RETURN_PERIODS:
                    losses[(EP_TYPES[int(ep_type)], int(period))] = float(loss)
        summaries.append(PerspectiveSummary(perspective, aal, losses))
    return summaries


def format_summary(summaries: list[PerspectiveSummary]) -> str:
    lines = []
    for s in summaries:
        lines.append(f"  {s.perspective.upper():3} AAL: {s.aal:,.0f}" if s.aal is not None else f"  {s.perspective.upper()}")
        for ep in EP_TYPES.values():
            points = [f"{rp}y {s.losses[(ep, rp)]:,.0f}" for rp in RETURN_PERIODS if (ep, rp) in s.losses]
            if points:
                lines.append(f"      {ep}: " + ", ".join(points))
    return "\n".join(lines)
