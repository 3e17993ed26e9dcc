// Renders the app icons (public/icons/*.png) from the SVG drawn below, with the
// Chromium that the browser tests use (playwright-core from tests/browser). Run once
// after changing the drawing: `npm run icons`; the PNGs are committed.
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const require = createRequire(join(here, "../../tests/browser/package.json"));
const { chromium } = require("playwright-core");
const out = join(here, "../public/icons");

// The mark: a note sheet with a folded corner and a sync badge, on an indigo tile.
// `inset` shrinks the mark toward the centre (maskable icons keep it in the safe zone).
function svg({ tile, inset = 0 }) {
  const scale = 1 - 2 * inset;
  const offset = 512 * inset;
  const background = tile
    ? `<rect width="512" height="512" rx="112" fill="url(#bg)"/>`
    : `<rect width="512" height="512" fill="url(#bg)"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512" width="512" height="512">
  <defs>
    <linearGradient id="bg" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="#5b50f0"/>
      <stop offset="1" stop-color="#3525b8"/>
    </linearGradient>
  </defs>
  ${background}
  <g transform="translate(${offset} ${offset}) scale(${scale}) translate(-30 -21)">
    <path d="M150 96h158l74 74v226a24 24 0 0 1-24 24H150a24 24 0 0 1-24-24V120a24 24 0 0 1 24-24z" fill="#ffffff"/>
    <path d="M308 96v50a24 24 0 0 0 24 24h50z" fill="#c9c4ff"/>
    <rect x="170" y="206" width="150" height="20" rx="10" fill="#4338ca"/>
    <rect x="170" y="256" width="172" height="20" rx="10" fill="#a5a0f5"/>
    <rect x="170" y="306" width="120" height="20" rx="10" fill="#a5a0f5"/>
    <circle cx="360" cy="372" r="78" fill="#14b8a6" stroke="#ffffff" stroke-width="16"/>
    <path d="M324 360a38 38 0 0 1 66-20" fill="none" stroke="#ffffff" stroke-width="14" stroke-linecap="round"/>
    <path d="M396 316v28h-28" fill="none" stroke="#ffffff" stroke-width="14" stroke-linecap="round" stroke-linejoin="round"/>
    <path d="M396 384a38 38 0 0 1-66 20" fill="none" stroke="#ffffff" stroke-width="14" stroke-linecap="round"/>
    <path d="M324 428v-28h28" fill="none" stroke="#ffffff" stroke-width="14" stroke-linecap="round" stroke-linejoin="round"/>
  </g>
</svg>`;
}

writeFileSync(join(out, "icon.svg"), svg({ tile: true }) + "\n");

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage();
const shots = [
  { file: "icon-192.png", size: 192, drawing: svg({ tile: true }) },
  { file: "icon-512.png", size: 512, drawing: svg({ tile: true }) },
  { file: "maskable-512.png", size: 512, drawing: svg({ tile: false, inset: 0.1 }) },
  { file: "apple-touch-icon.png", size: 180, drawing: svg({ tile: false, inset: 0.06 }) },
];
for (const { file, size, drawing } of shots) {
  await page.setViewportSize({ width: size, height: size });
  await page.setContent(
    `<style>html,body{margin:0;background:transparent}svg{display:block;width:${size}px;height:${size}px}</style>${drawing}`,
  );
  await page.screenshot({ path: join(out, file), omitBackground: true });
  console.log(`wrote ${file}`);
}
await browser.close();
