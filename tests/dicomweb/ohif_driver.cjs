// Drives OHIF (served from its npm package's dist/) in Debian's Chromium with playwright-core:
// the study list, then a study in the viewer; screenshots of both. Prints one JSON line.
const { chromium } = require("playwright-core");

const args = JSON.parse(process.argv[2]);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--use-angle=swiftshader",
      "--enable-unsafe-swiftshader",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const log = [];
  page.on("console", (m) => { if (m.type() === "error") log.push(m.text().slice(0, 300)); });
  page.on("response", (r) => {
    if (r.status() >= 400) log.push(`${r.status()} ${r.url().slice(-90)} accept=${r.request().headers()["accept"]}`);
  });
  page.on("requestfailed", (r) => log.push(`failed ${r.url().slice(0, 200)} ${r.failure()?.errorText}`));
  const out = { log };
  await page.goto(args.ohif + "/", { waitUntil: "load" });
  await page.getByText(args.studyText, { exact: false }).first().waitFor({ timeout: 120000 });
  out.listText = (await page.locator("body").innerText()).slice(0, 4000);
  await page.screenshot({ path: args.listShot });
  await page.goto(`${args.ohif}/viewer?StudyInstanceUIDs=${args.study}`, { waitUntil: "load" });
  await page.locator("canvas").first().waitFor({ timeout: 120000 });
  // Wait until the viewport's canvas shows something other than black.
  const drawn = await page.waitForFunction(
    () => {
      for (const c of document.querySelectorAll("canvas")) {
        if (c.width < 200 || c.height < 200) continue;
        const probe = document.createElement("canvas");
        probe.width = c.width; probe.height = c.height;
        const ctx = probe.getContext("2d");
        ctx.drawImage(c, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let i = 0; i < d.length; i += 4 * 97) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
        if (lit > 50) return { width: c.width, height: c.height, lit };
      }
      return false;
    },
    null,
    { timeout: 180000, polling: 1000 },
  ).catch((e) => null);
  out.canvas = drawn ? await drawn.jsonValue() : null;
  // Page to the middle of the series (the first slice is the top of the head).
  const box = await page.locator("canvas").first().boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < (args.scroll || 0); i++) { await page.mouse.wheel(0, 100); await page.waitForTimeout(60); }
  // On a loaded machine the viewer catches up with the wheel late: wait for its slice counter.
  if (args.scroll) {
    await page.getByText(`(${args.scroll + 1}/`, { exact: false }).first().waitFor({ timeout: 60000 }).catch(() => null);
  }
  await page.waitForTimeout(2500);
  await page.screenshot({ path: args.viewerShot });
  out.viewerText = (await page.locator("body").innerText()).slice(0, 2000);
  if (args.mprShot) out.mpr = await mpr(page);
  await browser.close();
  console.log(JSON.stringify(out));
}

// The same study in OHIF's MPR layout (hanging protocol "mpr" of its cornerstone extension: axial,
// sagittal and coronal volume viewports, ids mpr-axial, mpr-sagittal, mpr-coronal). OHIF builds the
// volume in the browser from the frames it fetches and renders it with WebGL (vtk.js).
async function mpr(page) {
  await page.goto(`${args.ohif}/viewer?StudyInstanceUIDs=${args.study}&hangingProtocolId=mpr`, { waitUntil: "load" });
  const found = await page.waitForFunction(
    () => {
      const el = document.querySelector('[data-viewport-uid="mpr-coronal"]');
      if (!el) return false;
      const c = el.querySelector("canvas");
      if (!c || c.width < 100 || c.height < 100) return false;
      const probe = document.createElement("canvas");
      probe.width = c.width; probe.height = c.height;
      const ctx = probe.getContext("2d");
      ctx.drawImage(c, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      for (let i = 0; i < d.length; i += 4 * 97) if (d[i] + d[i + 1] + d[i + 2] > 60) lit++;
      if (lit < 50) return false;
      const r = el.getBoundingClientRect();
      return { width: c.width, height: c.height, lit, box: [r.x, r.y, r.width, r.height] };
    },
    null,
    { timeout: 240000, polling: 1000 },
  ).catch(() => null);
  const result = { coronal: found ? await found.jsonValue() : null };
  await page.waitForTimeout(3000); // let the volume finish streaming in
  if (found) {
    result.coronal.box = await page.evaluate(() => {
      const r = document.querySelector('[data-viewport-uid="mpr-coronal"]').getBoundingClientRect();
      return [r.x, r.y, r.width, r.height];
    });
  }
  result.viewports = await page.evaluate(() =>
    Array.from(document.querySelectorAll("[data-viewport-uid]")).map((e) => e.getAttribute("data-viewport-uid")));
  await page.screenshot({ path: args.mprShot });
  result.text = (await page.locator("body").innerText()).slice(0, 2000);
  return result;
}

main().catch((e) => { console.error(e); process.exit(1); });
