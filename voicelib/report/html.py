"""HTML building blocks of the report: escaping, tables, inline PNG images and WAV audio, the page style."""
from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

import numpy as np
import pandas as pd

from voicelib.audio import decode
from voicelib.config import SAMPLE_RATE

SR = SAMPLE_RATE
CLIP_SECONDS = 4.0  # audio players keep the first seconds only, to keep the page small


def esc(value: object) -> str:
    """HTML-escape any value."""
    return html.escape(str(value))


def table_html(df: pd.DataFrame, *, index: bool = False, max_rows: int = 60) -> str:
    """Render a DataFrame as a plain HTML table (rounded floats, long tables cut with a note)."""
    if df is None or len(df) == 0:
        return '<p class="muted">(empty)</p>'
    more = len(df) - max_rows
    body = df.head(max_rows).to_html(index=index, classes="tbl", border=0, na_rep="",
                                     float_format=lambda x: f"{x:.4g}")
    return body + (f'<p class="muted">... {more} more rows</p>' if more > 0 else "")


def figure_png(fig: Any, *, dpi: int = 90) -> str:
    """Return a matplotlib figure as base64 PNG and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img_tag(png_b64: str, *, alt: str = "", width: int | None = None) -> str:
    """An <img> with inline base64 PNG data."""
    style = f' style="max-width:{width}px"' if width else ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{png_b64}"{style}>'


def load_clip(path: str | os.PathLike, seconds: float) -> np.ndarray:
    """The first `seconds` of a clip, mono at 16 kHz."""

    return decode.load(path, sr=SR)[: int(seconds * SR)]


def audio_tag(path: str | os.PathLike, *, seconds: float = CLIP_SECONDS) -> str:
    """An <audio> player with the first seconds of a clip inlined as 16 kHz 16-bit WAV."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, load_clip(path, seconds), SR, format="WAV", subtype="PCM_16")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<audio controls preload="none" src="data:audio/wav;base64,{data}"></audio>'


def nested_html(obj: Any, *, depth: int = 0) -> str:
    """Render nested metrics: scalars as a two-column table, dicts of dicts and lists of records as tables."""
    if isinstance(obj, list):
        return table_html(pd.DataFrame(obj)) if obj and all(isinstance(r, dict) for r in obj) else esc(obj)
    if not isinstance(obj, dict):
        return esc(obj)
    scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))}
    parts = ([table_html(pd.DataFrame({"name": list(scalars), "value": [fmt(v) for v in scalars.values()]}))]
             if scalars else [])
    for key, value in obj.items():
        if key in scalars:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) \
                and all(not isinstance(x, (dict, list)) for v in value.values() for x in v.values()):
            inner = table_html(pd.DataFrame(value).T.reset_index(names=key))
        else:
            inner = nested_html(value, depth=depth + 1)
        tag = "h4" if depth == 0 else "h5"
        parts.append(f"<{tag}>{esc(key.replace('_', ' '))}</{tag}>{inner}")
    return "".join(parts)


def fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def kv_table(mapping: dict[str, Any]) -> str:
    return table_html(pd.DataFrame({"name": list(mapping), "value": [fmt(v) for v in mapping.values()]}))


def records_table(mapping: dict[str, dict], name: str) -> str:
    rows = [{name: k, **{c: v for c, v in row.items() if not isinstance(v, (dict, list))}}
            for k, row in mapping.items()]
    return table_html(pd.DataFrame(rows))


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1150px;margin:auto;padding:1em 2em}h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;
padding-top:1em}h4{margin:1em 0 .3em}.muted{color:#888}nav a{margin-right:1em}
.tbl{border-collapse:collapse;font-size:13px;margin:.3em 0}.tbl td,.tbl th{border:1px solid #ddd;padding:3px 8px;
text-align:left}.tbl th{background:#f0f0f0}.kpis{display:flex;gap:1em;flex-wrap:wrap}.kpi{background:#fff;
border:1px solid #ddd;border-radius:6px;padding:.6em 1.2em}.kpi b{display:block;font-size:1.6em}
.kpi small{display:block;color:#666;font-size:11px;max-width:340px}.kpi.big{border:2px solid #36c}\
.kpi.big b{font-size:2.6em}
.row{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}.cards,.gallery{display:flex;flex-wrap:wrap;gap:1em}\
.card{background:#fff;border:1px solid #ddd;padding:.5em;
font-size:13px}figure{margin:0;background:#fff;border:1px solid #ddd;padding:.3em}figure img{max-width:520px}
figcaption{font-size:12px;color:#555}.warn{background:#fff4e5;border-left:4px solid #f90;padding:.5em 1em}
.fail{background:#fdecea;border-left:4px solid #d33;padding:.5em 1em}audio{height:32px;width:260px}
details{margin:.5em 0}code{background:#eee;padding:0 3px}"""
