// A table of records: one row per record, one cell per column. Each cell carries its column's label
// (data-label) so that at phone width, where a wide table cannot fit, the stylesheet lays every row out
// as a card of "label: value" lines instead of scrolling sideways.

import { h } from "./dom.js";

/**
 * columns: [{key, label, cell: (record, index) => text|Node, num?}]; rowProps: (record) => attributes of
 * the row. Numeric columns (num) align right.
 */
export function recordTable(caption, columns, records, rowProps = () => ({})) {
  return h("table", { class: "records" },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, ...records.map((r, i) => h("tr", rowProps(r),
      ...columns.map((c) => h("td", { "data-col": c.key, "data-label": c.label, class: c.num ? "num" : null },
        c.cell(r, i)))))));
}
