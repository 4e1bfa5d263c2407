// Two small chart kinds, drawn as inline SVG. Widths are percentages and text is never scaled, so a
// chart reads the same at laptop and phone widths. Colours come from CSS classes ("k-<kind>"); every
// number is also written as text, and the SVG's aria-label says it all for screen readers.

import { h, s } from "./dom.js";

const ROW = 36;

/**
 * Horizontal bars on one scale, one row each: label and value text on a line, the bar under it.
 * rows: [{label, value (number|null), text, kind, stat?}]; stat becomes data-stat on the row, and the
 * value data-value, so the figures can be read back exactly.
 */
export function barChart(title, rows, { empty = "No data yet." } = {}) {
  const known = rows.filter((r) => r.value !== null && r.value !== undefined);
  const fig = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (!known.length) {
    fig.append(h("p", { class: "empty" }, empty));
    return fig;
  }
  const max = Math.max(...known.map((r) => r.value), 0);
  const svg = s("svg", {
    width: "100%",
    height: rows.length * ROW,
    role: "img",
    "aria-label": title + ": " + rows.map((r) => `${r.label} ${r.text}`).join(", "),
  });
  rows.forEach((r, i) => {
    const y = i * ROW;
    const g = s("g", { class: "row", "data-stat": r.stat, "data-value": r.value === null ? "" : r.value });
    g.append(
      s("text", { x: 0, y: y + 13, class: "label" }, r.label),
      s("text", { x: "100%", y: y + 13, class: "value", "text-anchor": "end" }, r.text),
      s("rect", { x: 0, y: y + 18, width: "100%", height: 12, class: "track", rx: 2 }),
    );
    if (r.value !== null && r.value !== undefined && max > 0) {
      const width = r.value > 0 ? Math.max((r.value / max) * 100, 0.6) : 0;
      g.append(s("rect", { x: 0, y: y + 18, width: width.toFixed(2) + "%", height: 12, class: "bar k-" + r.kind, rx: 2 }));
    }
    svg.append(g);
  });
  fig.append(svg);
  return fig;
}

/**
 * One bar split in parts, with a legend under it. parts: [{label, value, text, kind, stat?}].
 * Negative values draw as nothing (they still show in the legend).
 */
export function stackedBar(title, parts, { empty = "No data yet." } = {}) {
  const fig = h("figure", { class: "chart" }, h("figcaption", {}, title));
  const total = parts.reduce((sum, p) => sum + Math.max(p.value || 0, 0), 0);
  if (total <= 0) {
    fig.append(h("p", { class: "empty" }, empty));
    return fig;
  }
  const svg = s("svg", {
    width: "100%",
    height: 20,
    role: "img",
    "aria-label": title + ": " + parts.map((p) => `${p.label} ${p.text}`).join(", "),
  });
  let x = 0;
  for (const p of parts) {
    const width = (Math.max(p.value || 0, 0) / total) * 100;
    if (width > 0) {
      svg.append(s("rect", { x: x.toFixed(3) + "%", y: 2, width: width.toFixed(3) + "%", height: 16, class: "bar k-" + p.kind }));
    }
    x += width;
  }
  const legend = h("ul", { class: "legend" });
  for (const p of parts) {
    legend.append(
      h("li", { "data-stat": p.stat, "data-value": p.value ?? "" },
        h("span", { class: "swatch k-" + p.kind, "aria-hidden": "true" }), p.label + " ", h("b", {}, p.text)),
    );
  }
  fig.append(svg, legend);
  return fig;
}
