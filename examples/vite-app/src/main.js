// The smallest app on nexus-sync: open this browser's device, join a vault with an
// invite code, then show and edit the `items` list of the vault's first document.
// Every tab and device in the vault sees the same list, and edits made offline sync
// when the connection is back.
import { Nexus } from "nexus-sync";

const $ = (id) => document.getElementById(id);
const nexus = await Nexus.open({ name: "vite-example" });
$("device").textContent = nexus.deviceId;

async function show(vault) {
  $("join").hidden = true;
  const [first] = await vault.documents();
  if (!first) {
    // Just joined: the documents are still on their way from the other devices.
    const start = Object.assign(document.createElement("button"), { textContent: "Start one" });
    start.onclick = async () => openList(vault, await vault.create({ items: [] }));
    $("state").replaceChildren(`Vault ${vault.name} has no list yet. `, start);
    const stop = nexus.on("docChanged", async (event) => {
      if (event.vaultId !== vault.id) return;
      stop();
      openList(vault, await vault.find(event.docId));
    });
    return;
  }
  openList(vault, await vault.find(first));
}

function openList(vault, handle) {
  const render = (doc) => {
    $("items").replaceChildren(...(doc.items ?? []).map((item) => Object.assign(document.createElement("li"), { textContent: item })));
  };
  render(handle.doc());
  handle.on("change", ({ doc }) => render(doc));
  $("add").hidden = false;
  $("state").textContent = `Vault ${vault.name}: ${vault.members} member devices`;
  $("add").onsubmit = async (e) => {
    e.preventDefault();
    const text = $("item").value;
    $("item").value = "";
    await handle.change((d) => {
      d.items ??= [];
      d.items.push(text);
    }); // resolved: stored in IndexedDB, and on its way to the other devices
  };
  window.example = { nexus, vault, handle };
}

$("join").onsubmit = async (e) => {
  e.preventDefault();
  $("state").textContent = "Joining… (an admin device or relay named in the code must be reachable)";
  try {
    await show(await nexus.join($("code").value.trim()));
  } catch (error) {
    $("state").textContent = `Could not join: ${error.message} (${error.code})`;
  }
};

const [vault] = await nexus.vaults();
if (vault) await show(vault);
window.exampleReady = true;
