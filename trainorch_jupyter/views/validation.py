"""Views of a validation result: a metrics table with pass/fail per bound and a
confusion-matrix plot (inline SVG: no plotting library needed).

Pure functions of the VALIDATION data.  The text and HTML forms carry no ids,
hosts or timings, so notebooks compare under nbval.
"""

from __future__ import annotations

import html
from typing import Any

from .text import fmt_value

PASS, FAIL = "#43a047", "#e53935"


def _g(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _bound_text(b: dict[str, Any]) -> str:
    if b["op"] == "baseline":
        sign = ">=" if b.get("higher_is_better", True) else "<="
        return f"{sign} {_g(b['bound'])} (baseline {_g(b['baseline'])} tol {_g(b['tolerance'])})"
    return f"{b['op']} {_g(b['bound'])}"


def _rows(result: dict[str, Any]) -> list[list[str]]:
    """metric, value, [± std], bound, result: one row per check, metrics without a check once."""
    metrics = result.get("metrics") or {}
    cv = bool(result.get("cv"))
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for b in result.get("bounds") or []:
        by_metric.setdefault(b["metric"], []).append(b)
    rows = [["metric", "value"] + (["std"] if cv else []) + ["bound", "result"]]
    for name, value in metrics.items():
        if name.endswith("_std") and name[:-4] in metrics:
            continue
        std = [_g(metrics.get(name + "_std", ""))] if cv else []
        checks = by_metric.get(name) or [None]
        for b in checks:
            if b is None:
                rows.append([name, fmt_value(value)] + std + ["", ""])
            else:
                rows.append([name, fmt_value(value)] + std + [_bound_text(b), "pass" if b["passed"] else "FAIL"])
    return rows


def headline(result: dict[str, Any]) -> str:
    verdict = "passed" if result.get("passed") else "FAILED"
    n_checks = len(result.get("bounds") or [])
    failed = sum(1 for b in result.get("bounds") or [] if not b["passed"])
    how = f"{result.get('cv')}-fold cross-validation" if result.get("cv") else _where(result)
    checks = f"{n_checks - failed}/{n_checks} checks passed" if n_checks else "no checks"
    return (f"validation {result.get('name')}: {verdict} ({checks}) - {result.get('model')}, "
            f"{result.get('task')}, {result.get('n_samples')} samples, {how}")


def _where(result: dict[str, Any]) -> str:
    w = result.get("world_size") or 1
    if result.get("where") == "kernel":
        return "evaluated in the kernel"
    return f"evaluated on {w} rank{'s' if w != 1 else ''}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows)


def confusion_text(cm: dict[str, Any] | None, max_classes: int = 20) -> str:
    if not cm or len(cm["labels"]) > max_classes:
        return ""
    labels = [str(v) for v in cm["labels"]]
    rows = [["true\\pred"] + labels] + [[labels[i]] + [str(v) for v in row] for i, row in enumerate(cm["matrix"])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "confusion matrix (rows: true, columns: predicted)\n" + "\n".join(lines)


def validation_text(result: dict[str, Any]) -> str:
    """The deterministic text/plain form."""
    parts = [headline(result), table(_rows(result))]
    if result.get("baseline_name") or result.get("baseline_id"):
        parts.append(f"  baseline: {result.get('baseline_name') or 'validation'}")
    cm = confusion_text(result.get("confusion"))
    if cm:
        parts.append(cm)
    return "\n".join(parts)


def confusion_svg(cm: dict[str, Any] | None, cell: int = 22) -> str:
    """The confusion matrix as a heat map, counts written in the cells."""
    if not cm or not cm["labels"]:
        return ""
    labels = [str(v) for v in cm["labels"]]
    k = len(labels)
    cell = max(8, min(cell, 440 // k))
    pad = 34
    size = pad + k * cell
    peak = max(max(row) for row in cm["matrix"]) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 4}" height="{size + 16}" '
           f'font-family="sans-serif" font-size="{max(7, cell // 2)}">']
    out.append(f'<text x="{pad}" y="10">predicted</text>')
    for j, lab in enumerate(labels):
        out.append(f'<text x="{pad + j * cell + cell / 2:.0f}" y="{pad - 6}" text-anchor="middle">'
                   f'{html.escape(lab)}</text>')
        out.append(f'<text x="{pad - 4}" y="{pad + j * cell + cell * 0.65:.0f}" text-anchor="end">'
                   f'{html.escape(lab)}</text>')
    for i, row in enumerate(cm["matrix"]):
        for j, v in enumerate(row):
            shade = v / peak
            colour = (f"rgb({int(255 - 225 * shade)},{int(255 - 150 * shade)},{int(255 - 30 * shade)})"
                      if i == j else f"rgb(255,{int(255 - 200 * shade)},{int(255 - 200 * shade)})")
            x, y = pad + j * cell, pad + i * cell
            out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" stroke="#ddd"/>')
            if v and cell >= 14:
                ink = "#fff" if shade > 0.6 else "#000"
                out.append(f'<text x="{x + cell / 2:.0f}" y="{y + cell * 0.65:.0f}" text-anchor="middle" '
                           f'fill="{ink}">{v}</text>')
    out.append(f'<text x="2" y="{size + 12}">rows: true label</text>')
    out.append("</svg>")
    return "".join(out)


def validation_html(result: dict[str, Any]) -> str:
    """The panel: headline, metrics table coloured by pass/fail, confusion-matrix plot."""
    colour = PASS if result.get("passed") else FAIL
    rows = _rows(result)
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(c)}</th>" for c in rows[0])
    body = []
    for r in rows[1:]:
        verdict = r[-1]
        style = f"color:{PASS};font-weight:bold" if verdict == "pass" else (
            f"color:{FAIL};font-weight:bold" if verdict == "FAIL" else "")
        cells = "".join(f"<td style='padding:2px 8px'>{html.escape(c)}</td>" for c in r[:-1])
        body.append(f"<tr>{cells}<td style='padding:2px 8px;{style}'>{html.escape(verdict)}</td></tr>")
    svg = confusion_svg(result.get("confusion"))
    return (
        f"<div class='trainorch-validation' style='border-left:4px solid {colour};padding-left:8px'>"
        f"<div><b>{html.escape(headline(result))}</b></div>"
        f"<div style='display:flex;gap:24px;align-items:flex-start'>"
        f"<table style='border-collapse:collapse;font-family:monospace'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        + (f"<div>{svg}</div>" if svg else "")
        + "</div></div>"
    )


def bundle(result: dict[str, Any]) -> dict[str, str]:
    """The mime bundle a notebook displays."""
    return {"text/plain": validation_text(result), "text/html": validation_html(result)}
