// Opens the minimal MPR page in Debian's Chromium with playwright-core, waits for a reformatted frame,
// takes a screenshot, and reports what the page shows. Prints one JSON line.
const { chromium } = require("playwright-core");

const args = JSON.parse(process.argv[2]);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 760, height: 760 } });
  const log = [];
  page.on("console", (m) => { if (m.type() === "error") log.push(m.text().slice(0, 300)); });
  page.on("response", (r) => { if (r.status() >= 400) log.push(`${r.status()} ${r.url().slice(-100)}`); });
  await page.goto(args.page, { waitUntil: "load" });
  await page.waitForFunction(() => {
    const img = document.getElementById("frame");
    return img.complete && img.naturalWidth > 0 && img.dataset.frame;
  }, null, { timeout: 120000 });
  const shown = await page.evaluate(() => {
    const img = document.getElementById("frame");
    return { src: img.src, width: img.naturalWidth, height: img.naturalHeight, frame: img.dataset.frame,
             info: document.getElementById("info").textContent };
  });
  await page.screenshot({ path: args.shot, fullPage: true });
  await browser.close();
  console.log(JSON.stringify({ shown, log }));
}

main().catch((e) => { console.error(e); process.exit(1); });
