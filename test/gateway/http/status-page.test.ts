import assert from 'node:assert/strict';
import { DevicePhases } from '../../../protocol/uplink.ts';
import { startHttp } from '../../../gateway/http/start.ts';
import type { Page } from 'playwright-core';
import { launchBrowser } from '../../helpers/browser.ts';
import { Rig, sampleImage } from '../../helpers/rig.ts';

/**
 * The status page in a real headless Chromium (Debian's /usr/bin/chromium through playwright-core):
 * it is open while a rollout runs; what it showed is recorded in the page itself by a
 * MutationObserver, so the test judges the page's own DOM, not the API.
 */
describe('status page (headless Chromium)', function () {
  this.timeout(120_000);
  let rig: Rig | undefined;
  let http: Awaited<ReturnType<typeof startHttp>>;
  let browser: Awaited<ReturnType<typeof launchBrowser>> | undefined;
  afterEach(async () => {
    await browser?.close();
    browser = undefined;
    await http?.stop();
    http = undefined;
    await rig?.stop();
    rig = undefined;
  });

  /**
   * A rig of `devices`, its HTTP server and a Chromium page with `initScript` (page code as a
   * string: this project's TypeScript has no DOM types) and `before` run before the page loads;
   * returns once the page lists every device online and follows the events live.
   */
  async function openPage(devices: number, initScript: string, before: (page: Page) => Promise<unknown> = async () => undefined): Promise<{ page: Page; ids: string[]; site: Rig }> {
    const site = await Rig.start({ devices });
    rig = site;
    http = await startHttp(site.gateway, { host: '127.0.0.1', port: 0 });
    assert.ok(http);
    const ids = site.sims.devices.map((d) => d.id).sort();
    browser = await launchBrowser();
    const page = await browser.context.newPage();
    await page.addInitScript({ content: initScript });
    await before(page);
    await page.goto(`${http.url}/`);
    for (const id of ids) await page.locator(`#fleet tr[data-device="${id}"][data-online="true"]`).waitFor({ timeout: 30_000 });
    await page.locator('#conn', { hasText: 'live' }).waitFor({ timeout: 30_000 });
    return { page, ids, site };
  }

  it('shows the fleet, each device moving through its phases to updated, the history, and a device going offline', async () => {
    // every phase each device row showed in the running-campaign view, in order
    const { page, ids, site } = await openPage(3, `window.seen = {};
        new MutationObserver(() => {
          document.querySelectorAll('#running tr[data-device]').forEach((tr) => {
            const list = (window.seen[tr.dataset.device] ??= []);
            if (list.at(-1) !== tr.dataset.phase) list.push(tr.dataset.phase);
          });
        }).observe(document, { subtree: true, childList: true, attributes: true });`);

    const { image, manifest } = sampleImage({ version: '1.1.0', size: 256 * 1024 });
    await site.client.connect();
    const { campaign } = await site.client.push(manifest, image);
    await site.client.follow(campaign);

    // the history lists the campaign completed, and the fleet table each device updated
    await page.locator(`#history tr[data-campaign="${campaign}"][data-state="completed"]`).waitFor({ timeout: 30_000 });
    for (const id of ids) {
      const row = page.locator(`#fleet tr[data-device="${id}"]`);
      await row.filter({ hasText: 'updated 1.1.0' }).waitFor({ timeout: 30_000 });
      assert.match(await row.innerText(), /\b1\.1\.0\b/);
    }
    const historyRow = await page.locator(`#history tr[data-campaign="${campaign}"]`).innerText();
    assert.match(historyRow, /completed\t\d{1,2}\/.*\t3\t3\t0\t0\t0\t/, historyRow);

    const seen = await page.evaluate<Record<string, string[]>>('window.seen');
    for (const id of ids) {
      const phases = seen[id] ?? [];
      assert.ok(phases.includes('transferring'), `${id} was shown transferring: ${phases.join(' > ')}`);
      assert.equal(phases.at(-1), 'done', `${id} ended done: ${phases.join(' > ')}`);
      // measured (probing) and queued before its turn, then its update (offering, which can be too
      // short for a redraw, transferring ..) to done in the order of §7.6
      const start = phases.findIndex((p) => p === 'offering' || p === 'transferring');
      const fromUpdate = phases.slice(start).map((p) => DevicePhases.indexOf(p as (typeof DevicePhases)[number]));
      assert.deepEqual(fromUpdate, [...fromUpdate].sort((a, b) => a - b), `${id}: phases in their order: ${phases.join(' > ')}`);
      assert.ok(fromUpdate.length >= 3, `${id} was shown moving through its update: ${phases.join(' > ')}`);
    }

    // a device that leaves the broker is shown offline, live
    const gone = site.sims.devices.find((d) => d.id === ids[0])!;
    await gone.stop();
    await page.locator(`#fleet tr[data-device="${ids[0]}"][data-online="false"]`).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#fleet tr[data-online="true"]').count(), ids.length - 1);
  });

  it('of two fetches of a running campaign, the earlier answer coming back last does not put older phases over newer ones', async () => {
    // the page counts the answers to campaign fetches it has handled; the first fetch of the
    // campaign is answered (with what the gateway said then) only once the campaign is over
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => { release = r; });
    let fetched = 0;
    let heldDone: Promise<void> | undefined;
    const { page, site } = await openPage(2, `window.campaignAnswers = 0;
        const f = window.fetch;
        window.fetch = (u, o) => f(u, o).then((r) => { if (String(u).includes('/api/campaigns/c-')) r.clone().json().then(() => setTimeout(() => window.campaignAnswers++, 0)); return r; });`,
    (p) => p.route(/\/api\/campaigns\/c-/, async (route) => {
      if (++fetched > 1) return route.continue();
      const response = await route.fetch();
      heldDone = held.then(() => route.fulfill({ response }));
      await heldDone;
    }));

    const { image, manifest } = sampleImage({ version: '1.1.0', size: 64 * 1024 });
    await site.client.connect();
    const { campaign } = await site.client.push(manifest, image);
    await site.client.follow(campaign);
    await page.locator(`#history tr[data-campaign="${campaign}"][data-state="completed"]`).waitFor({ timeout: 30_000 });
    assert.ok(fetched >= 2, `the campaign was fetched again after the first fetch (${fetched})`);
    const answered = await page.evaluate<number>('window.campaignAnswers');
    release();
    await heldDone;
    await page.waitForFunction(`window.campaignAnswers > ${answered}`, undefined, { timeout: 30_000 });
    assert.equal(await page.locator(`#history tr[data-campaign="${campaign}"]`).getAttribute('data-state'), 'completed', 'still shown completed after the stale answer');
    assert.equal(await page.locator('#running tr[data-device]:not([data-phase="done"])').count(), 0, 'no device shown back in an earlier phase');
  });
});
