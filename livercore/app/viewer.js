// The lesion viewer (livercore/app/viewer.py): one CT phase as an SVG image with the marks
// drawn over it. A drag draws the lesion box (box mode) or pans (click modes); a click reports
// its point; the wheel and the buttons zoom, a double-click resets the field. Selections go to
// Python as the trigger "selection", in the viewer's data coordinates (x = column, y = row,
// pixel centres at integers) and in the shape plotly reports them: {box: [{x, y}]} or
// {points: [{x, y}]}.
//
// Streamlit calls this function again whenever the data changes (a new mark, a new zoom) and
// keeps the element mounted, so it builds its DOM once and then only updates it: a new mark
// costs the browser a few attributes, not a new image.

const SVG = "http://www.w3.org/2000/svg";
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, not a drag
const MIN_FIELD_PX = 8; // the wheel does not zoom in beyond a field this many pixels wide

function svgNode(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function toData(svg, event) {
  const m = svg.getScreenCTM().inverse();
  return { x: m.a * event.clientX + m.c * event.clientY + m.e, y: m.b * event.clientX + m.d * event.clientY + m.f };
}

function setField(view, field) {
  view.field = field;
  const [x, y, w, h] = field;
  view.svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
}

function zoomAt(view, factor, cx, cy) {
  const [x, y, w, h] = view.field;
  const nw = Math.max(Math.min(w * factor, view.full[2]), MIN_FIELD_PX);
  const scale = nw / w;
  setField(view, [cx - (cx - x) * scale, cy - (cy - y) * scale, w * scale, h * scale]);
}

function build(root) {
  const view = {};
  const frame = document.createElement("div");
  frame.className = "frame";
  root.appendChild(frame);
  const svg = svgNode("svg", { class: "lc-viewer", role: "img", preserveAspectRatio: "xMidYMid meet" }, frame);
  view.svg = svg;
  view.image = svgNode("image", { preserveAspectRatio: "none" }, svg);
  view.marks = svgNode("g", { class: "marks" }, svg);
  view.drag = svgNode("rect", { class: "drag", visibility: "hidden" }, svg);
  const head = document.createElement("div");
  head.className = "head";
  view.title = document.createElement("span");
  view.title.className = "title";
  head.appendChild(view.title);
  const tools = document.createElement("div");
  tools.className = "tools";
  for (const [name, label, act] of [
    ["zoom in", "+", () => zoomAt(view, 1 / 1.5, view.field[0] + view.field[2] / 2, view.field[1] + view.field[3] / 2)],
    ["zoom out", "\u2212", () => zoomAt(view, 1.5, view.field[0] + view.field[2] / 2, view.field[1] + view.field[3] / 2)],
    ["reset the field", "\u21ba", () => setField(view, view.home)],
  ]) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = name;
    button.setAttribute("aria-label", name);
    button.textContent = label;
    button.addEventListener("click", act);
    tools.appendChild(button);
  }
  head.appendChild(tools);
  frame.appendChild(head);
  view.caption = document.createElement("div");
  view.caption.className = "caption";
  frame.appendChild(view.caption);

  let press = null; // {start (data), client (x, y), field, id}
  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    svg.setPointerCapture(event.pointerId);
    press = { start: toData(svg, event), client: [event.clientX, event.clientY], field: view.field, moved: false };
    event.preventDefault();
  });
  svg.addEventListener("pointermove", (event) => {
    if (!press) return;
    const dx = event.clientX - press.client[0];
    const dy = event.clientY - press.client[1];
    if (!press.moved && Math.hypot(dx, dy) < CLICK_SLOP_PX) return;
    press.moved = true;
    if (view.data.mode === "box") {
      const p = toData(svg, event);
      const x0 = Math.min(p.x, press.start.x);
      const y0 = Math.min(p.y, press.start.y);
      view.drag.setAttribute("x", x0);
      view.drag.setAttribute("y", y0);
      view.drag.setAttribute("width", Math.abs(p.x - press.start.x));
      view.drag.setAttribute("height", Math.abs(p.y - press.start.y));
      view.drag.setAttribute("visibility", "visible");
    } else {
      // pan: the field follows the pointer (in data units of the field the press began on)
      const [x, y, w, h] = press.field;
      const perPx = w / svg.getBoundingClientRect().width;
      setField(view, [x - dx * perPx, y - dy * perPx, w, h]);
    }
  });
  const release = (event) => {
    if (!press) return;
    const started = press;
    press = null;
    view.drag.setAttribute("visibility", "hidden");
    if (event.type !== "pointerup") return;
    const p = toData(svg, event);
    if (view.data.mode === "box" && started.moved) {
      const xs = [started.start.x, p.x].sort((a, b) => a - b);
      const ys = [started.start.y, p.y].sort((a, b) => a - b);
      view.send("selection", { box: [{ x: xs, y: ys }] });
    } else if (view.data.mode !== "box" && !started.moved) {
      view.send("selection", { points: [{ x: started.start.x, y: started.start.y }] });
    }
  };
  svg.addEventListener("pointerup", release);
  svg.addEventListener("pointercancel", release);
  svg.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const p = toData(svg, event);
      zoomAt(view, event.deltaY > 0 ? 1.25 : 1 / 1.25, p.x, p.y);
    },
    { passive: false },
  );
  svg.addEventListener("dblclick", () => setField(view, view.home));
  return view;
}

function drawMarks(view, data) {
  view.marks.replaceChildren();
  if (data.box) {
    const [row, col, height, width] = data.box;
    svgNode("rect", { class: "lesion", x: col - width / 2, y: row - height / 2, width, height }, view.marks);
  }
  for (const [kind, centre] of [["liver", data.liver], ["aorta", data.aorta]]) {
    if (centre) svgNode("circle", { class: kind, cx: centre[1], cy: centre[0], r: data.roi_radius }, view.marks);
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".lc-root");
  if (!root) {
    root = document.createElement("div");
    root.className = "lc-root";
    parentElement.appendChild(root);
    root.view = build(root);
  }
  const view = root.view;
  view.data = data;
  view.send = setTriggerValue;
  const [rows, cols] = data.shape;
  view.full = [-0.5, -0.5, cols, rows];
  const [[r0, r1], [c0, c1]] = data.field;
  const home = [c0, r0, c1 - c0, r1 - r0];
  if (!view.home || home.join() !== view.home.join()) {
    view.home = home; // a new field from Python (a new mark, zoom or image): show it
    setField(view, home);
  }
  if (view.image.getAttribute("href") !== data.src) {
    view.image.setAttribute("href", data.src);
    for (const [k, v] of Object.entries({ x: -0.5, y: -0.5, width: cols, height: rows })) view.image.setAttribute(k, v);
  }
  root.style.maxWidth = `${data.size_px}px`;
  view.svg.dataset.mode = data.mode;
  view.svg.setAttribute("aria-label", `${data.title}; ${data.caption}`);
  view.title.replaceChildren();
  const phase = document.createElement("strong");
  phase.textContent = data.title.split(" · ")[0];
  view.title.append(phase, data.title.slice(phase.textContent.length));
  view.caption.textContent = data.caption;
  drawMarks(view, data);
}
