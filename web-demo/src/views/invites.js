// The Invites screen: admins create an invite code for the current vault (expiry and
// role) shown with a copy button and a QR code; anyone redeems a code to join a vault;
// and another vault can be created here.
import { h, icon, ICONS, copyText, drawQr, describeError, say } from "../dom.js";

const EXPIRIES = [
  [600, "10 minutes"],
  [3600, "1 hour"],
  [86400, "1 day"],
  [7 * 86400, "7 days"],
];

export function invitesView(app) {
  // Create an invite.
  const expiry = h("select", { class: "input select", id: "invite-expiry", "aria-label": "Expires after" }, ...EXPIRIES.map(([s, label]) => h("option", { value: s, selected: s === 86400 }, label)));
  const role = h("select", { class: "input select", id: "invite-role", "aria-label": "Role" }, h("option", { value: "member" }, "Member"), h("option", { value: "admin" }, "Admin"));
  const createButton = h("button", { class: "button primary", id: "create-invite", type: "submit" }, "Create invite");
  const createMessage = h("p", { class: "inline-message", id: "invite-message", hidden: true });
  const code = h("textarea", { class: "input mono code-output", id: "invite-code", readOnly: true, rows: 4, "aria-label": "Invite code" });
  const qr = h("div", { class: "qr", id: "invite-qr" });
  const expiresNote = h("p", { class: "muted small" });
  const result = h(
    "div",
    { class: "invite-result", id: "invite-result", hidden: true },
    code,
    h("div", { class: "form-row" }, h("button", { class: "button secondary", id: "copy-invite", onclick: (e) => copyText(code.value, e.currentTarget) }, icon(ICONS.copy), h("span", { class: "label" }, "Copy code"))),
    expiresNote,
    qr,
  );
  const reachHint = h("p", { class: "hint", hidden: true });
  const createForm = h(
    "form",
    {
      class: "form-row",
      onsubmit: async (e) => {
        e.preventDefault();
        createButton.disabled = true;
        say(createMessage, "");
        try {
          const value = await app.vault.createInvite({ expiresInSeconds: Number(expiry.value), role: role.value });
          code.value = value;
          await drawQr(qr, value, "QR code of the invite");
          const label = EXPIRIES.find(([s]) => s === Number(expiry.value))?.[1];
          expiresNote.textContent = `One device can redeem it, as ${role.value === "admin" ? "an admin" : "a member"}, within ${label}.`;
          result.hidden = false;
        } catch (error) {
          say(createMessage, `Could not create an invite: ${describeError(error)}`);
        } finally {
          createButton.disabled = false;
        }
      },
    },
    h("label", { class: "field" }, h("span", {}, "Expires after"), expiry),
    h("label", { class: "field" }, h("span", {}, "Role"), role),
    createButton,
  );
  const inviteTitle = h("h2", {}, "Invite a device");
  const notAdmin = h("p", { class: "muted", hidden: true });
  const inviteCard = h("div", { class: "card", id: "invite-card" }, inviteTitle, notAdmin, reachHint, createForm, createMessage, result);

  // Redeem a code.
  const joinCode = h("textarea", { class: "input mono", id: "join-code", rows: 3, placeholder: "nexus1…", "aria-label": "Invite code", spellcheck: false, required: true });
  const joinButton = h("button", { class: "button primary", id: "join-button", type: "submit" }, "Join");
  const joinStatus = h("p", { class: "inline-message", id: "join-status", hidden: true });
  const joinForm = h(
    "form",
    {
      class: "stack-form",
      id: "join-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const value = joinCode.value.trim();
        if (!value.startsWith("nexus1")) {
          say(joinStatus, "An invite code starts with nexus1.");
          return;
        }
        joinButton.disabled = true;
        say(joinStatus, "Joining… waiting for a device or relay named in the code to let this device in.", "info");
        joinStatus.classList.add("working");
        try {
          const vault = await app.join(value);
          joinCode.value = "";
          say(joinStatus, `Joined ${vault.name}.`, "ok");
          app.show("notes");
        } catch (error) {
          say(joinStatus, `Could not join: ${describeError(error)}`);
        } finally {
          joinStatus.classList.remove("working");
          joinButton.disabled = false;
        }
      },
    },
    joinCode,
    h("div", { class: "form-row" }, joinButton),
  );
  const joinCard = h(
    "div",
    { class: "card", id: "join-card" },
    h("h2", {}, "Join a vault"),
    h("p", { class: "muted small" }, "Paste a code from a device of the vault. Joining takes a few seconds once that device (or a relay in the code) is reachable."),
    joinForm,
    joinStatus,
  );

  // Another vault.
  const vaultName = h("input", { class: "input", id: "new-vault-name", placeholder: "Vault name", "aria-label": "Vault name", required: true, maxLength: 60 });
  const vaultMessage = h("p", { class: "inline-message", hidden: true });
  const vaultButton = h("button", { class: "button secondary", id: "create-vault", type: "submit" }, "Create vault");
  const vaultCard = h(
    "div",
    { class: "card" },
    h("h2", {}, "Create another vault"),
    h("p", { class: "muted small" }, "Each vault has its own notes and devices; switch between them at the top."),
    h(
      "form",
      {
        class: "inline-form",
        onsubmit: async (e) => {
          e.preventDefault();
          vaultButton.disabled = true;
          try {
            await app.createVault(vaultName.value.trim());
            vaultName.value = "";
            app.show("notes");
          } catch (error) {
            say(vaultMessage, `Could not create the vault: ${describeError(error)}`);
          } finally {
            vaultButton.disabled = false;
          }
        },
      },
      vaultName,
      vaultButton,
    ),
    vaultMessage,
  );

  const root = h(
    "section",
    { class: "screen", id: "screen-invites", "aria-label": "Invites" },
    h("h1", { class: "screen-title" }, "Invites"),
    h("div", { class: "grid" }, inviteCard, h("div", { class: "stack" }, joinCard, vaultCard)),
  );

  function render() {
    const vault = app.vault;
    inviteCard.hidden = !vault;
    if (!vault) return;
    const removed = app.isRemoved(vault);
    const admin = vault.role === "admin" && !removed;
    inviteTitle.textContent = `Invite a device to ${vault.name}`;
    notAdmin.hidden = admin;
    notAdmin.textContent = !removed ? `Only admins of ${vault.name} can invite. Ask one for a code, or to approve a device by its id.` : `This device was removed from ${vault.name}.`;
    createForm.hidden = !admin;
    if (!admin) result.hidden = true;
    reachHint.hidden = !admin || app.status.reachableAt.length > 0;
    reachHint.textContent =
      "This browser is not reachable through a relay yet, so the code names no address of it: the new device must reach another member of the vault by itself. Connect to a relay on the Sync screen first.";
  }

  app.addEventListener("vaults", render);
  app.addEventListener("status", render);
  render();
  return {
    element: root,
    /** `?invite=`: fills the code in. */
    prefill(value) {
      joinCode.value = value;
    },
    onShow(detail) {
      render();
      if (detail?.focus === "join") joinCode.focus();
    },
  };
}
