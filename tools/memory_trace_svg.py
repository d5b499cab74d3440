#!/usr/bin/env python3
"""Draws a `--memory-trace` file (Chrome trace JSON, docs/memory.md) as an SVG picture.

Top panel: the device's KV pages by state over time (used, cached, free, stacked). Bottom panel:
the running totals of the page transitions that move K/V between tiers (evicted, offloaded to the
host, restored from it, prefix hits on cached pages) and, with a host tier, its used pages.

    tools/memory_trace_svg.py trace.json docs/memory_trace.svg [--title TEXT]

Standard library only (no matplotlib): the picture is a few polylines and polygons.
"""
import argparse
import json

W, H = 900, 560
LEFT, RIGHT = 70, 170
PANELS = [(40, 250), (320, 510)]  # (top, bottom) of each panel in pixels
COLORS = {"used": "#d62728", "cached": "#1f77b4", "free": "#c7e9c0",
          "evicted": "#ff7f0e", "offloaded": "#9467bd", "restored": "#2ca02c",
          "reloaded": "#17becf", "host used": "#8c564b"}


def load_events(path):
    text = open(path).read().strip()
    if not text.endswith("]"):  # a killed run leaves the array open
        text = text.rstrip(",\n ") + "]"
    return json.loads(text)


def series(events):
    pages, host, moves = [], [], []
    totals = {k: 0 for k in ("evicted", "offloaded", "restored", "reloaded")}
    for e in events:
        if e.get("ph") != "C":
            continue
        t = e["ts"] / 1e6
        a = e.get("args", {})
        if e["name"] == "KV pages":
            pages.append((t, a["used"], a["cached"], a["free"]))
        elif e["name"] == "host KV pages":
            host.append((t, a["used"], a["used"] + a["free"]))
        elif e["name"] == "page transitions":
            for k in totals:
                totals[k] += a.get(k, 0)
            moves.append((t, dict(totals)))
    return pages, host, moves


def scaler(t0, t1, v1, top, bottom):
    span = max(t1 - t0, 1e-9)
    return lambda t, v: (LEFT + (t - t0) / span * (W - LEFT - RIGHT),
                         bottom - v / max(v1, 1) * (bottom - top))


def poly(points, **attrs):
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<polyline points="{pts}" {extra}/>' if "fill" not in attrs or attrs["fill"] == "none" \
        else f'<polygon points="{pts}" {extra}/>'


def axes(out, top, bottom, t0, t1, vmax, label):
    out.append(f'<rect x="{LEFT}" y="{top}" width="{W - LEFT - RIGHT}" height="{bottom - top}" '
               'fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT - 8}" y="{top + 4}" text-anchor="end">{vmax}</text>')
    out.append(f'<text x="{LEFT - 8}" y="{bottom}" text-anchor="end">0</text>')
    out.append(f'<text x="{LEFT}" y="{bottom + 16}">{t0:.1f} s</text>')
    out.append(f'<text x="{W - RIGHT}" y="{bottom + 16}" text-anchor="end">{t1:.1f} s</text>')
    out.append(f'<text x="{LEFT}" y="{top - 8}" font-weight="bold">{label}</text>')


def legend(out, top, names):
    for i, name in enumerate(names):
        y = top + 14 + 18 * i
        out.append(f'<rect x="{W - RIGHT + 12}" y="{y - 10}" width="12" height="12" '
                   f'fill="{COLORS[name]}"/>')
        out.append(f'<text x="{W - RIGHT + 30}" y="{y}">{name}</text>')


def draw(pages, host, moves, title):
    t0, t1 = pages[0][0], pages[-1][0]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    top, bottom = PANELS[0]
    total = pages[0][1] + pages[0][2] + pages[0][3]
    sc = scaler(t0, t1, total, top, bottom)
    lower = [0] * len(pages)
    for idx, name in ((1, "used"), (2, "cached"), (3, "free")):  # stacked bands
        upper = [lo + p[idx] for lo, p in zip(lower, pages)]
        band = [sc(p[0], u) for p, u in zip(pages, upper)]
        band += [sc(p[0], lo) for p, lo in reversed(list(zip(pages, lower)))]
        out.append(poly(band, fill=COLORS[name], stroke="none"))
        lower = upper
    axes(out, top, bottom, t0, t1, total, "device KV pages by state")
    legend(out, top, ["used", "cached", "free"])
    top, bottom = PANELS[1]
    names = ["evicted", "offloaded", "restored", "reloaded"]
    vmax = max([m[1][k] for m in moves for k in names] + [h[1] for h in host] + [1])
    sc = scaler(t0, t1, vmax, top, bottom)
    for name in names:
        if moves and moves[-1][1][name] > 0:
            out.append(poly([sc(t, m[name]) for t, m in moves], fill="none",
                            stroke=COLORS[name], stroke_width=2))
    if host:
        out.append(poly([sc(t, u) for t, u, _ in host], fill="none", stroke=COLORS["host used"],
                        stroke_width=2, stroke_dasharray="6,3"))
        names.append("host used")
    axes(out, top, bottom, t0, t1, vmax,
         "pages moved (running totals)" + (f"; host tier used pages of {host[0][2]}"
                                           if host else ""))
    legend(out, top, names)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("svg")
    ap.add_argument("--title", default="nanocascade --memory-trace")
    a = ap.parse_args()
    pages, host, moves = series(load_events(a.trace))
    if not pages:
        raise SystemExit(f"{a.trace}: no 'KV pages' counter events")
    with open(a.svg, "w") as f:
        f.write(draw(pages, host, moves, a.title))
    print(f"{a.svg}: {len(pages)} steps, {pages[-1][0] - pages[0][0]:.1f} s")


if __name__ == "__main__":
    main()
