"""The terminal's loss summary of an analysis (``make demo``): AAL and full-uncertainty losses at the
standard return periods, per perspective and summary id of the first summary set (the portfolio-level
one when there is one), as the results page reads them (:mod:`oasis_ops.results.reader`).

Return-period losses are not additive: each summary id's are shown as its own curve has them, never summed.
"""

from __future__ import annotations

from pathlib import Path

from oasis_ops.results.reader import STANDARD_RETURN_PERIODS, AALType, EPCalc, Results, describe_set, read_results

#: Summary ids printed per perspective; the rest are in the output files (and on the results page).
MAX_PRINTED_IDS = 5


def summarise(output: Path) -> Results:
    return read_results(output)


def format_summary(results: Results) -> str:
    if not results.set_ids:
        return f"  No AAL or EP outputs. {results.ep_message or ''}".rstrip()
    set_id = results.set_ids[0]
    members = [s for s in results.summary_sets if s.id == set_id]
    lines = [f"  Summary set {set_id}: {describe_set(members)}"]
    for summary_set in members:
        for summary_id in summary_set.summary_ids[:MAX_PRINTED_IDS]:
            name = summary_set.perspective.value.upper() + ("" if summary_set.portfolio_level else f" {summary_id.label}")
            aal = results.aal_of(summary_set.perspective, set_id, summary_id.id, AALType.ANALYTICAL)
            line = f"  {name:3}"
            if aal is not None:
                line += f" AAL: {aal.mean:,.0f}" + (f" (SD {aal.sd:,.0f})" if aal.sd is not None else "")
            lines.append(line)
            for curve in results.curves:
                if (curve.perspective, curve.summary_set, curve.summary_id, curve.calc) != (summary_set.perspective, set_id, summary_id.id, EPCalc.FULL_UNCERTAINTY):
                    continue
                points = [f"{rp}y {loss:,.0f}" for rp in STANDARD_RETURN_PERIODS if (loss := curve.at(rp)) is not None]
                if points:
                    lines.append(f"      {curve.ep_type}: " + ", ".join(points))
        hidden = summary_set.total_summary_ids - min(len(summary_set.summary_ids), MAX_PRINTED_IDS)
        if hidden > 0:
            lines.append(f"  … and {hidden} more {summary_set.perspective.value.upper()} summary ids: see the output files")
    message = results.ep_message
    return "\n".join(lines + ([f"  {message}"] if message else []))
