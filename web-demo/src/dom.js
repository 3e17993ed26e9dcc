// Small DOM helpers shared by the screens: building elements, copying text, drawing
// QR codes, and formatting ids and times for people.
import QRCode from "qrcode";

/**
 * Creates an element: `h("button", { class: "primary", onclick }, "Save")`. Props that
 * start with "on" become listeners, `dataset` fills data-*, other props are set as
 * properties when the element has them and as attributes otherwise.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "html") element.innerHTML = value;
    else if (key in element && !key.includes("-")) element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An inline SVG icon from a path list (24×24, stroked). */
export function icon(paths, label) {
  const span = document.createElement("span");
  span.className = "icon";
  if (label) span.setAttribute("aria-label", label);
  else span.setAttribute("aria-hidden", "true");
  span.innerHTML = `<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${paths}</svg>`;
  return span;
}

export const ICONS = {
  notes: '<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/><path d="M14 3v5h5"/><path d="M9 13h6M9 17h4"/>',
  sync: '<path d="M21 12a9 9 0 0 1-15.5 6.2"/><path d="M3 12A9 9 0 0 1 18.5 5.8"/><path d="M18 2v4h-4"/><path d="M6 22v-4h4"/>',
  devices: '<rect x="3" y="4" width="13" height="10" rx="2"/><path d="M7 18h5"/><rect x="17" y="9" width="5" height="11" rx="1.5"/>',
  invites: '<path d="M15 7a4 4 0 1 1-8 0 4 4 0 0 1 8 0z"/><path d="M3 21a8 8 0 0 1 12-6.9"/><path d="M19 14v6M16 17h6"/>',
  plus: '<path d="M12 5v14M5 12h14"/>',
  back: '<path d="M15 18l-6-6 6-6"/>',
  copy: '<rect x="9" y="9" width="12" height="12" rx="2"/><path d="M5 15V5a2 2 0 0 1 2-2h10"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
  camera: '<path d="M4 8h3l2-3h6l2 3h3v11H4z"/><circle cx="12" cy="13" r="3.5"/>',
  search: '<circle cx="11" cy="11" r="7"/><path d="M20 20l-4-4"/>',
  lock: '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/>',
};

/** Copies `text`, and says so on `button` for a moment. */
export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (or an old browser): fall back to a selection copy.
    const area = h("textarea", { value: text, readOnly: true, class: "offscreen" });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  if (button) {
    const label = button.querySelector(".label") ?? button;
    const before = label.textContent;
    label.textContent = "Copied";
    button.classList.add("done");
    setTimeout(() => {
      label.textContent = before;
      button.classList.remove("done");
    }, 1500);
  }
}

/** Draws `text` as a QR code (SVG) into `container`. */
export async function drawQr(container, text, label) {
  const svg = await QRCode.toString(text, {
    type: "svg",
    margin: 1,
    errorCorrectionLevel: text.length > 200 ? "L" : "M",
    color: { dark: "#1c1a36", light: "#ffffff" },
  });
  container.innerHTML = svg;
  container.setAttribute("role", "img");
  container.setAttribute("aria-label", label);
}

/** `12D3KooWAbc…xyz123`: enough of a DeviceId to tell devices apart. */
export function shortId(id) {
  return id && id.length > 20 ? `${id.slice(0, 10)}…${id.slice(-6)}` : id ?? "";
}

/** "just now", "5 min ago", "yesterday", or a date. */
export function timeAgo(ms) {
  if (!ms) return "";
  const seconds = Math.round((Date.now() - ms) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  if (seconds < 2 * 86400) return "yesterday";
  return new Date(ms).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

/** "14:03:27" */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** A message for an error from the engine or the package (they carry `.code`). */
export function describeError(error) {
  const message = error?.message ?? String(error);
  return error?.code ? `${message} (${error.code})` : message;
}

/** Sets an inline message element: kind "error", "ok" or "info"; empty text hides it. */
export function say(element, text, kind = "error") {
  element.textContent = text ?? "";
  element.hidden = !text;
  element.dataset.kind = kind;
}

/**
 * Makes `button` ask for confirmation: the first press relabels it, a second press
 * within a few seconds runs `action`.
 */
export function confirmButton(button, question, action) {
  let armed = null;
  button.addEventListener("click", async () => {
    const label = button.querySelector(".label") ?? button;
    if (!armed) {
      const before = label.textContent;
      label.textContent = question;
      button.classList.add("armed");
      armed = setTimeout(() => {
        label.textContent = before;
        button.classList.remove("armed");
        armed = null;
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.classList.remove("armed");
    await action();
  });
  return button;
}
