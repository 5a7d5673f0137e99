// The web chat in a real browser: Debian's Chromium driven by playwright-core.
// Run by tests/server/chat_test.c against a running server:
//   node tests/e2e/chat_ui.mjs BASE_URL PRODUCT_ID EXPECTED_PRICE|- SCREENSHOT.png
// Opens BASE_URL/?product=PRODUCT_ID, asks a question, waits for streamed text
// and the end of the answer; with EXPECTED_PRICE ("12.99 USD") also for a
// product card showing exactly that price and an "as of" time; then clicks 👍
// under the last answer and waits for the server's ok. Prints
// "ok ui ... answer=ID" and exits 0, or prints what went wrong and exits 1.
import { chromium } from 'playwright-core';
import { existsSync } from 'node:fs';

const [base, product, price, shot] = process.argv.slice(2);
if (!base || !product || !price || !shot) {
  console.error('usage: chat_ui.mjs BASE_URL PRODUCT_ID EXPECTED_PRICE|- SCREENSHOT.png');
  process.exit(2);
}
const exe = process.env.CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
if (!exe) {
  console.error('no chromium: scripts/install-deps.sh installs Debian\'s chromium');
  process.exit(1);
}
// Chromium refuses to run as root with its sandbox (CI runs as root).
const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
const browser = await chromium.launch({ executablePath: exe, headless: true, args });
let status = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/?product=${encodeURIComponent(product)}`);
  await page.waitForFunction((id) => document.getElementById('product').value === id, product, { timeout: 15000 });
  // A sampled answer can (rarely) end before its first word: ask up to three times.
  let text = '';
  for (let i = 1; i <= 3 && !text; i++) {
    await page.fill('#q', 'How much is it, and is it in stock?');
    await page.click('#send');
    await page.waitForSelector(`.msg.assistant:nth-of-type(${2 * i}).complete`, { timeout: 60000 });
    text = (await page.locator('.msg.assistant .text').nth(i - 1).textContent()).trim();
  }
  if (!text) throw new Error('no streamed text in three answers');
  let shown = '-';
  if (price !== '-') {
    const card = page.locator('.msg.assistant .card').last();
    await card.waitFor({ timeout: 10000 });
    shown = (await card.locator('.price').textContent()).trim();
    if (shown !== price) throw new Error(`the card shows '${shown}', the store says '${price}'`);
    const asof = await card.locator('.asof').textContent();
    if (!/as of \d{4}-\d\d-\d\d/.test(asof)) throw new Error(`no as-of time on the card: '${asof}'`);
  }
  // 👍 on the last answer: enabled once done named the stored answer; the
  // vote counts once the server answered ok (the caller checks the database).
  const bar = page.locator('.msg.assistant .vote').last();
  const up = bar.locator('.vote-up');
  await page.waitForFunction(() => {
    const b = [...document.querySelectorAll('.msg.assistant .vote .vote-up')].pop();
    return b && !b.disabled;
  }, null, { timeout: 10000 });
  await up.click();
  await bar.locator('.vote-up.chosen').waitFor({ timeout: 10000 });
  const answerId = await bar.getAttribute('data-answer-id');
  if (!/^[0-9a-f]{32}$/.test(answerId || '')) throw new Error(`no answer id on the vote bar: '${answerId}'`);
  const chips = await page.locator('#suggestions button').count();
  if (errors.length) throw new Error('page errors: ' + errors.join('; '));
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`ok ui text=${JSON.stringify(text.slice(0, 80))} price=${shown} suggestions=${chips} voted=up answer=${answerId}`);
} catch (e) {
  console.log('FAIL ui: ' + (e && e.message ? e.message : e));
  status = 1;
} finally {
  await browser.close();
}
process.exit(status);
