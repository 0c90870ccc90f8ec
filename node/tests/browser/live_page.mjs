// Drives Debian's chromium through a node's live mesh page (node/tests/live_page.rs starts the
// mesh and runs this). Arguments: the gateway URL, the module to publish, where to save the
// screenshot, then the ids of the peers the page must list.
//
// Steps, each announced on stdout as "STEP <name>" (the Rust test answers on stdin):
//   peers    the page lists every peer, and a badge -> the test publishes the module, answers
//            says how peers reach the node             "published"
//   module   the module appears with its providers
//   rates    after requests, the request rate moves
//   done     no console errors; screenshot saved
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [url, module, screenshot, ...peers] = process.argv.slice(2);
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const step = (name) => console.log(`STEP ${name}`);
const deadline = { timeout: 60_000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const errors = [];
let sending = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("response", (response) => {
    if (response.status() >= 400) errors.push(`${response.status()} ${response.url()}`);
  });
  await page.goto(url);

  for (const peer of peers) {
    await page.waitForSelector(`#peers tr[data-peer="${peer}"]`, deadline);
  }
  // Nodes on loopback: the badge says the node is reachable on this machine only.
  await page.waitForFunction(
    () => document.getElementById("node-badges").textContent.includes("local"),
    null,
    deadline,
  );
  step("peers");

  const answer = await lines.next();
  input.close();
  if (answer.value !== "published") throw new Error(`expected "published", got ${answer.value}`);
  const providers = peers.length + 1;
  await page.waitForFunction(
    ([name, count]) => {
      const row = [...document.querySelectorAll("#modules tr")].find((r) => r.dataset.module === name);
      return row && Number(row.dataset.providers) >= count;
    },
    [module, providers],
    deadline,
  );
  step("module");
  console.error("the module is listed with its providers");

  // Requests through the gateway until the page shows them as a rate.
  sending = true;
  const load = (async () => {
    while (sending) {
      const response = await fetch(`${url}/v1/invoke/${module}`, { method: "POST", body: "hello" });
      await response.arrayBuffer();
    }
  })();
  await page.waitForFunction(
    () => Number(document.getElementById("rate-total").dataset.value) > 0,
    null,
    deadline,
  );
  sending = false;
  await load;
  step("rates");

  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length > 0) throw new Error(`console errors: ${errors.join("; ")}`);
  step("done");
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  sending = false;
  await browser.close();
}
