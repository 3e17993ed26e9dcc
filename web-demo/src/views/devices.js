// The Devices screen: this device's DeviceId (text, copy button, QR code) for an admin
// to approve; for admins, approving a device by pasting its id or scanning its QR code,
// and revoking devices; the list of the vault's devices with role and status.
import { h, icon, ICONS, copyText, drawQr, shortId, describeError, say, confirmButton } from "../dom.js";
import { hasCamera, scanQr } from "../scanner.js";

const DEVICE_ID = /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/;

export function devicesView(app) {
  const deviceId = app.nexus.deviceId;
  const qr = h("div", { class: "qr", id: "device-qr" });
  drawQr(qr, deviceId, "QR code of this device's id");

  const approveInput = h("input", {
    class: "input mono",
    id: "approve-id",
    placeholder: "12D3KooW…",
    "aria-label": "DeviceId to approve",
    autocomplete: "off",
    spellcheck: false,
    required: true,
  });
  const roleSelect = h("select", { class: "input select", id: "approve-role", "aria-label": "Role" }, h("option", { value: "member" }, "Member"), h("option", { value: "admin" }, "Admin"));
  const approveButton = h("button", { class: "button primary", id: "approve-button", type: "submit" }, "Approve");
  const scanButton = h("button", { class: "button secondary", id: "scan-button", type: "button", hidden: true, onclick: startScan }, icon(ICONS.camera), h("span", { class: "label" }, "Scan QR"));
  const approveMessage = h("p", { class: "inline-message", id: "approve-message", hidden: true });
  const video = h("video", { class: "scanner-video", playsInline: true, muted: true });
  const stopScanButton = h("button", { class: "button secondary", type: "button" }, "Stop");
  const scanner = h("div", { class: "scanner", id: "scanner", hidden: true }, video, h("p", { class: "muted small" }, "Point the camera at the QR code on the other device's Devices screen."), stopScanButton);
  const approveForm = h(
    "form",
    { class: "stack-form", id: "approve-form", onsubmit: approve },
    approveInput,
    h("div", { class: "form-row" }, roleSelect, approveButton, scanButton),
  );
  const approveCard = h(
    "div",
    { class: "card", id: "approve-card" },
    h("h2", {}, "Approve a device"),
    h("p", { class: "muted small" }, "Paste the DeviceId shown on the new device's Devices screen, or scan its QR code. It receives the vault as soon as it is reachable, directly or through a relay."),
    approveForm,
    scanner,
    approveMessage,
  );
  const listTitle = h("h2", {}, "Devices");
  const listMessage = h("p", { class: "inline-message", hidden: true });
  const deviceList = h("ul", { class: "row-list", id: "device-list", "aria-label": "Devices of the vault" });
  const listCard = h("div", { class: "card", id: "devices-card" }, listTitle, deviceList, listMessage);

  const root = h(
    "section",
    { class: "screen", id: "screen-devices", "aria-label": "Devices" },
    h("h1", { class: "screen-title" }, "Devices"),
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        { class: "card this-device" },
        h("h2", {}, "This device"),
        h("p", { class: "muted small" }, "Its DeviceId is what an admin approves. Share it as text or let them scan the code."),
        h(
          "div",
          { class: "id-row" },
          h("code", { class: "device-id", id: "device-id" }, deviceId),
          h("button", { class: "button secondary", id: "copy-device-id", onclick: (e) => copyText(deviceId, e.currentTarget) }, icon(ICONS.copy), h("span", { class: "label" }, "Copy")),
        ),
        qr,
      ),
      h("div", { class: "stack" }, approveCard, listCard),
    ),
  );

  let scan = null;
  async function startScan() {
    say(approveMessage, "");
    scanner.hidden = false;
    scanButton.disabled = true;
    scan = scanQr(video);
    stopScanButton.onclick = () => scan?.stop();
    try {
      const value = await scan.result;
      if (value) {
        approveInput.value = value.trim();
        say(approveMessage, DEVICE_ID.test(value.trim()) ? "Scanned. Check the id, then press Approve." : "That QR code is not a DeviceId.", DEVICE_ID.test(value.trim()) ? "info" : "error");
      }
    } catch (error) {
      say(approveMessage, `The camera could not be used: ${describeError(error)}`);
    } finally {
      scan = null;
      scanner.hidden = true;
      scanButton.disabled = false;
    }
  }

  async function approve(e) {
    e.preventDefault();
    const id = approveInput.value.trim();
    if (!DEVICE_ID.test(id)) {
      say(approveMessage, "A DeviceId starts with 12D3KooW and has 52 characters.");
      return;
    }
    approveButton.disabled = true;
    try {
      say(listMessage, "");
      await app.vault.approve(id, { role: roleSelect.value });
      approveInput.value = "";
      say(approveMessage, `Approved ${shortId(id)}. It gets the vault when it is reachable.`, "ok");
      await render();
    } catch (error) {
      say(approveMessage, `Could not approve: ${describeError(error)}`);
    } finally {
      approveButton.disabled = false;
    }
  }

  async function revoke(id) {
    say(listMessage, "");
    say(approveMessage, "");
    try {
      await app.vault.revoke(id);
      say(listMessage, `Revoked ${shortId(id)}. Its later edits are refused and the vault key rotates.`, "ok");
      await render();
    } catch (error) {
      say(listMessage, `Could not revoke: ${describeError(error)}`);
    }
  }

  async function render() {
    const vault = app.vault;
    const admin = vault?.role === "admin" && !app.isRemoved(vault);
    approveCard.hidden = !admin;
    listCard.hidden = !vault;
    if (!vault) return;
    listTitle.textContent = `Devices in ${vault.name}`;
    let devices;
    try {
      devices = await vault.devices();
    } catch (error) {
      say(listMessage, `Could not list the devices: ${describeError(error)}`);
      return;
    }
    devices.sort((a, b) => Number(b.thisDevice) - Number(a.thisDevice) || (a.status === b.status ? 0 : a.status === "member" ? -1 : 1));
    deviceList.replaceChildren(
      ...devices.map((d) =>
        h(
          "li",
          { class: `row${d.status === "revoked" ? " revoked" : ""}`, dataset: { device: d.deviceId } },
          h(
            "div",
            { class: "row-main" },
            h("span", { class: "mono", title: d.deviceId }, shortId(d.deviceId)),
            h("span", { class: "row-sub" }, d.thisDevice ? "This device" : d.status === "revoked" ? "Removed from the vault" : "In the vault"),
          ),
          h("span", { class: "badge", dataset: { kind: d.status === "revoked" ? "error" : d.role === "admin" ? "info" : "muted" } }, d.status === "revoked" ? "Revoked" : d.role === "admin" ? "Admin" : "Member"),
          admin && !d.thisDevice && d.status === "member"
            ? confirmButton(h("button", { class: "button ghost danger small revoke", dataset: { device: d.deviceId } }, h("span", { class: "label" }, "Revoke")), "Confirm revoke", () => revoke(d.deviceId))
            : null,
        ),
      ),
    );
  }

  hasCamera().then((yes) => (scanButton.hidden = !yes));
  app.addEventListener("vaults", render);
  app.nexus.on("membershipChanged", (e) => e.vaultId === app.vault?.id && render());
  render();
  return {
    element: root,
    onShow: render,
    onHide: () => scan?.stop(),
  };
}
