// Vaults offered to this device by an approval it never asked for: one banner per offer,
// above every screen, until the person accepts or declines it. Nothing of an offered
// vault is stored or synced before it is accepted.
import { h, icon, ICONS, describeError, say, shortId } from "../dom.js";

export function offersView(app) {
  const element = h("div", { class: "offers", id: "offers", "aria-live": "polite" });

  function render() {
    element.hidden = app.offers.length === 0;
    element.replaceChildren(...app.offers.map(banner));
  }

  function banner(offer) {
    const message = h("p", { class: "inline-message", hidden: true });
    const accept = h("button", { class: "button primary small accept-offer", dataset: { vault: offer.vaultId } }, "Accept");
    const decline = h("button", { class: "button ghost small decline-offer", dataset: { vault: offer.vaultId } }, "Decline");
    const answer = async (yes) => {
      accept.disabled = decline.disabled = true;
      try {
        if (yes) await app.acceptOffer(offer.vaultId);
        else await app.declineOffer(offer.vaultId);
      } catch (error) {
        say(message, `Could not ${yes ? "accept" : "decline"}: ${describeError(error)}`);
        accept.disabled = decline.disabled = false;
      }
    };
    accept.onclick = () => answer(true);
    decline.onclick = () => answer(false);
    return h(
      "div",
      { class: "banner offer", role: "alert", dataset: { vault: offer.vaultId } },
      icon(ICONS.lock),
      h(
        "div",
        { class: "offer-text" },
        h("strong", {}, `Join “${offer.name}”?`),
        ` Device ${shortId(offer.offeredBy)} approved this device as ${offer.role === "admin" ? "an admin" : "a member"}. Accept only if you asked for it: nothing of the vault is kept until you do.`,
        message,
      ),
      h("div", { class: "form-row" }, accept, decline),
    );
  }

  app.addEventListener("offers", render);
  render();
  return { element };
}
