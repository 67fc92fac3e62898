// The quote's options as a cost-vs-deadline chart: inline SVG drawn here (no library, no
// inline style: CSS classes from style.css, presentation attributes only).

const SVG = "http://www.w3.org/2000/svg";
const W = 760;
const H = 320;
const M = { left: 96, right: 24, top: 20, bottom: 44 };

function el(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return spanMs > 20 * 3600e3 ? `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${hm}` : hm;
}

export function finishOf(option) {
  return Date.parse(option.expected_completion_at || option.completes_at);
}

// options: QuoteOption[]; deadline: ISO string | null; budget: number | null.
// onPick(option) is called when a point is clicked.
export function drawChart(container, options, { deadline, budget, onPick }) {
  container.replaceChildren();
  const svg = el("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img",
    "aria-label": "price per image against completion time, one point per option",
  });
  const xs = options.map(finishOf);
  const ys = options.map((o) => Number(o.price_per_image_usd));
  const deadlineMs = deadline ? Date.parse(deadline) : null;
  const now = Date.now();
  // A term far beyond every option (a deadline tomorrow for work done in minutes, a cap 100×
  // the prices) would squash the points into a corner: it is then named at the edge instead.
  let x0 = Math.min(now, ...xs);
  const latest = Math.max(...xs, x0 + 60e3);
  const deadlineInView = deadlineMs !== null && deadlineMs - x0 <= 3 * (latest - x0);
  let x1 = Math.max(latest, deadlineInView ? deadlineMs : -Infinity);
  const pad = (x1 - x0) * 0.06;
  x0 -= pad; x1 += pad;
  const highest = Math.max(...ys);
  const budgetInView = budget !== null && budget <= 3 * highest;
  let y1 = Math.max(highest, budgetInView ? budget : 0) * 1.15;
  if (!(y1 > 0)) y1 = 0.01;
  const px = (ms) => M.left + ((ms - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (usd) => H - M.bottom - (usd / y1) * (H - M.top - M.bottom);

  // the region within both terms
  if (deadlineMs !== null || budget !== null) {
    const right = deadlineInView ? px(deadlineMs) : W - M.right;
    const top = budgetInView ? py(budget) : M.top;
    svg.append(el("rect", {
      x: M.left, y: top, width: Math.max(0, right - M.left), height: Math.max(0, H - M.bottom - top),
      class: "terms-zone",
    }));
  }
  // axes and ticks
  svg.append(el("line", { x1: M.left, y1: H - M.bottom, x2: W - M.right, y2: H - M.bottom, class: "axis" }));
  svg.append(el("line", { x1: M.left, y1: M.top, x2: M.left, y2: H - M.bottom, class: "axis" }));
  const yStep = niceStep(y1, 5);
  const places = Math.min(8, Math.max(2, Math.ceil(-Math.log10(yStep))));
  for (let i = 0; i * yStep <= y1 * (1 + 1e-9); i++) {
    const v = i * yStep;
    svg.append(el("line", { x1: M.left, y1: py(v), x2: W - M.right, y2: py(v), class: "grid-line" }));
    svg.append(el("text", { x: M.left - 8, y: py(v) + 4, class: "tick", "text-anchor": "end" },
      `$${v.toFixed(places)}`));
  }
  const hour = 3600e3;
  const steps = [60e3, 5 * 60e3, 15 * 60e3, 30 * 60e3, hour, 2 * hour, 3 * hour, 6 * hour, 12 * hour, 24 * hour];
  const xStep = steps.find((s) => (x1 - x0) / s <= 7) || 24 * hour;
  for (let t = Math.ceil(x0 / xStep) * xStep; t <= x1; t += xStep) {
    svg.append(el("line", { x1: px(t), y1: H - M.bottom, x2: px(t), y2: H - M.bottom + 5, class: "axis" }));
    svg.append(el("text", { x: px(t), y: H - M.bottom + 18, class: "tick", "text-anchor": "middle" },
      timeLabel(t, x1 - x0)));
  }
  svg.append(el("text", { x: (W + M.left) / 2, y: H - 6, class: "axis-title", "text-anchor": "middle" },
    "expected completion (your time zone)"));
  svg.append(el("text", { x: 14, y: (H - M.bottom) / 2, class: "axis-title", "text-anchor": "middle",
    transform: `rotate(-90 14 ${(H - M.bottom) / 2})` }, "price per image"));
  // the customer's terms
  const when = (ms) => new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  if (deadlineInView) {
    svg.append(el("line", { x1: px(deadlineMs), y1: M.top, x2: px(deadlineMs), y2: H - M.bottom, class: "term" }));
    svg.append(el("text", { x: px(deadlineMs) - 6, y: M.top + 12, class: "term-label", "text-anchor": "end" },
      "your deadline"));
  } else if (deadlineMs !== null) {
    svg.append(el("text", { x: W - M.right - 6, y: M.top + 12, class: "term-label", "text-anchor": "end" },
      `your deadline ${when(deadlineMs)} →`));
  }
  if (budgetInView) {
    svg.append(el("line", { x1: M.left, y1: py(budget), x2: W - M.right, y2: py(budget), class: "term" }));
    svg.append(el("text", { x: M.left + 6, y: py(budget) - 6, class: "term-label", "text-anchor": "start" },
      `your max $${budget} / image`));
  } else if (budget !== null) {
    svg.append(el("text", { x: M.left + 6, y: M.top + 12, class: "term-label", "text-anchor": "start" },
      `↑ your max $${budget} / image`));
  }
  svg.append(el("line", { x1: px(now), y1: M.top, x2: px(now), y2: H - M.bottom, class: "now" }));
  // the options; each label where it overlaps no other (about 7 px a character, 16 a line)
  const placed = [];
  const overlaps = (box) => placed.some((b) => box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1);
  options.forEach((option, i) => {
    const ok = option.meets_deadline && option.meets_budget;
    const g = el("g", { class: `point ${ok ? "ok" : "outside"}`, tabindex: 0, "data-option": option.option_id });
    const cx = px(xs[i]);
    const cy = py(ys[i]);
    g.append(el("circle", { cx, cy, r: 7 }));
    const text = `${option.label} $${option.price_per_image_usd}`;
    const width = 7 * text.length;
    const right = cx > W - 40 - width;
    const lx = cx + (right ? -11 : 11);
    let ly = cy < M.top + 40 ? cy + 20 : cy - 9; // below a point near the top
    const box = () => ({ x0: right ? lx - width : lx, x1: right ? lx : lx + width, y0: ly - 13, y1: ly + 3 });
    for (let tries = 0; overlaps(box()) && tries < 12; tries++) ly += cy < M.top + 40 ? 16 : -16;
    placed.push(box());
    g.append(el("text", { x: lx, y: ly, class: "point-label", "text-anchor": right ? "end" : "start" }, text));
    g.append(el("title", {}, `${option.label}: ${option.machines}× ${option.gpu} (${option.provider}), `
      + `$${option.price_per_image_usd}/image, done ${new Date(xs[i]).toLocaleString()}`));
    g.addEventListener("click", () => onPick && onPick(option));
    svg.append(g);
  });
  container.append(svg);
}
