"""Demo KPI observations: eight weekly periods for two models, per customer segment (plain Python, seeded).

The figures follow the kind of results the seed article reports for a healthcare-CRM firm: the fine-tuned
model lifts satisfaction, shortens resolution and lowers escalations, with realistic weekly noise.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random

KPIS = (
    # slug, name, unit, higher is better, kind, description, baseline mean, change with the adapter, weekly noise
    (
        "csat",
        "Customer satisfaction",
        "points (1-5)",
        True,
        "mean",
        "Average rating customers give a reply, 1 to 5.",
        3.9,
        0.35,
        0.08,
    ),
    (
        "resolution_hours",
        "Time to resolution",
        "hours",
        False,
        "mean",
        "Hours from the first message to the ticket being solved.",
        20.0,
        -4.0,
        1.2,
    ),
    (
        "escalation_rate",
        "Escalation rate",
        "share",
        False,
        "proportion",
        "Share of tickets handed to a second-line engineer.",
        0.18,
        -0.05,
        0.015,
    ),
    (
        "dev_minutes_saved",
        "Developer time saved",
        "minutes per task",
        True,
        "mean",
        "Minutes saved per legacy-code task with the generated summary.",
        6.0,
        9.0,
        1.5,
    ),
)
SEGMENTS = ("clinic", "hospital", "pharmacy")


def kpi_csv(*, baseline: str, candidate: str, weeks: int = 8, first_monday: dt.date, seed: int = 5) -> str:
    """KPI observations as the CSV the import takes: one row per KPI, model, week and segment."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["kpi", "model", "period_start", "period_end", "segment", "value", "sample_size", "std"])
    for slug, _, _, _, kind, _, base, change, noise in KPIS:
        for week in range(weeks):
            start = first_monday + dt.timedelta(weeks=week)
            for segment in SEGMENTS:
                for model, lift in ((baseline, 0.0), (candidate, change)):
                    value = base + lift + rng.gauss(0, noise)
                    if kind == "proportion":
                        value = min(max(value, 0.0), 1.0)
                    std = "" if kind == "proportion" else f"{abs(base) * 0.25:.3f}"
                    writer.writerow(
                        [
                            slug,
                            model,
                            start.isoformat(),
                            (start + dt.timedelta(days=6)).isoformat(),
                            segment,
                            f"{value:.4f}",
                            rng.randint(80, 260),
                            std,
                        ]
                    )
    return out.getvalue()
