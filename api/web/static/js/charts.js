// Hand-drawn SVG bar charts: no library, nothing fetched from elsewhere. Each chart is an
// image with a text alternative; the numbers it shows are also in the page's tables.
import { slideName, svg } from "./dom.js";

const ROW = 22;
const BAR = 14;

/**
 * Horizontal bars, one per {label, value, colour}, on a 0..max scale, each with its value
 * written after it. Used for a cell's class probabilities.
 */
export function barChart(rows, { max = 1, format = (v) => v, title = "Bar chart", width = 320 } = {}) {
  const labelWidth = 78;
  const valueWidth = 52;
  const plot = width - labelWidth - valueWidth;
  const height = rows.length * ROW + 8;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `${title}: ${rows.map((r) => `${r.label} ${format(r.value)}`).join(", ")}`,
  });
  chart.append(svg("line", { class: "axis", x1: labelWidth, y1: 2, x2: labelWidth, y2: height - 4 }));
  rows.forEach((row, i) => {
    const y = 4 + i * ROW;
    const w = max > 0 ? Math.max(0, (row.value / max) * plot) : 0;
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + BAR - 3, "text-anchor": "end" }, row.label),
      svg("rect", { x: labelWidth, y, width: w.toFixed(1), height: BAR, fill: row.colour, "data-label": row.label },
        svg("title", {}, `${row.label}: ${format(row.value)}`)),
      svg("text", { x: labelWidth + w + 4, y: y + BAR - 3 }, format(row.value)),
    );
  });
  return chart;
}

/**
 * Counts per slide as small multiples: one row per slide and one column per class, each
 * column on its own scale, so a handful of platelets stays as readable as many red cells.
 */
export function countsChart(slides, classes, colours, { width = 900 } = {}) {
  const nameWidth = 200;
  const gap = 16;
  const column = (width - nameWidth - gap * classes.length) / classes.length;
  const header = 22;
  const height = header + Math.max(1, slides.length) * ROW + 6;
  const maxima = Object.fromEntries(
    classes.map((c) => [c, Math.max(1, ...slides.map((s) => s.counts?.[c] ?? 0))]),
  );
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `Counts per slide for ${slides.length} slides; the table below lists the same numbers.`,
  });
  classes.forEach((cls, k) => {
    const x0 = nameWidth + k * (column + gap);
    chart.append(
      svg("text", { x: x0, y: 14, "font-weight": "600" }, `${cls} (max ${maxima[cls]})`),
      svg("line", { class: "axis", x1: x0, y1: header - 2, x2: x0, y2: height - 4 }),
    );
  });
  slides.forEach((slide, i) => {
    const y = header + i * ROW;
    const name = slideName(slide).length > 28 ? `${slideName(slide).slice(0, 27)}…` : slideName(slide);
    chart.append(svg("text", { x: nameWidth - 8, y: y + BAR - 3, "text-anchor": "end" }, name,
      svg("title", {}, slideName(slide))));
    classes.forEach((cls, k) => {
      const x0 = nameWidth + k * (column + gap);
      const value = slide.counts?.[cls];
      if (value === null || value === undefined) {
        chart.append(svg("text", { x: x0 + 4, y: y + BAR - 3, class: "muted" }, "–"));
        return;
      }
      const w = (value / maxima[cls]) * (column - 36);
      chart.append(
        svg("rect", { x: x0, y, width: w.toFixed(1), height: BAR, fill: colours[cls] },
          svg("title", {}, `${slideName(slide)}: ${value} ${cls}`)),
        svg("text", { x: x0 + w + 4, y: y + BAR - 3 }, String(value)),
      );
    });
  });
  return chart;
}
