/**
 * bench/fanout, gateway side: one fwgate in its own process, so that its CPU time is its own.
 * Started by bench/fanout.ts; prints JSON lines on stdout:
 *   {"t":"ready","url":...}                         broker listening; start the fleet
 *   {"t":"done","wallMs":...,"cpuUserUs":...,...}   every device finished (from startCampaign to complete)
 * The image is stored directly (store.beginUpload -> write -> commit, unsigned: the store path
 * takes it and simulators without pinned keys accept it), as bench/rollout does. Exits by itself
 * after the campaign so that `node --cpu-prof` can write its profile.
 *
 *   node --import tsx bench/lib/fanout-gateway.ts --devices 100 --size 1048576 --concurrency 100 --data /tmp/x
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { parseConfig } from '../../gateway/config.ts';
import { Gateway } from '../../gateway/gateway.ts';
import { silentLogger } from '../../gateway/log.ts';
import { manifestForImage } from '../../protocol/manifest.ts';
import type { DevicePhase } from '../../protocol/uplink.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string' },
    size: { type: 'string' },
    concurrency: { type: 'string' },
    data: { type: 'string' },
  },
  strict: true,
});
const DEVICES = Number(values.devices);
const SIZE = Number(values.size);
const CONCURRENCY = Number(values.concurrency);
if (![DEVICES, SIZE, CONCURRENCY].every((n) => Number.isInteger(n) && n > 0) || !values.data) {
  process.stderr.write('fanout-gateway: --devices, --size, --concurrency (whole numbers) and --data are required\n');
  process.exit(2);
}

const say = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

const config = parseConfig({
  dataDir: join(values.data, 'gateway'),
  // Every device connects from 127.0.0.1, like a site behind one NAT address: the default limit of
  // 600 connects per minute per address (then 10/s) would throttle the reconnects after the
  // reboots from N = 300 on and measure the limiter (docs/operations.md; bench/scale does the same).
  broker: { host: '127.0.0.1', port: 0, connectRatePerMin: 0 },
  rollout: { concurrency: CONCURRENCY, rebootTimeoutMs: 120_000, offlineWaitMs: 30_000 },
  log: { level: 'silent' },
});
const gateway = await Gateway.start({ config, log: silentLogger() });
say({ t: 'ready', url: gateway.broker.url });

const deadline = Date.now() + 120_000;
while (gateway.fleet.online().length < DEVICES) {
  if (Date.now() > deadline) {
    say({ t: 'error', message: `only ${gateway.fleet.online().length} of ${DEVICES} devices registered` });
    await gateway.stop();
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 50));
}

const image = Buffer.from(makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: 'sensor-v1', size: SIZE }));
const manifest = manifestForImage(image, { name: 'sensor-fw', version: '1.1.0', hw: ['sensor-v1'] });
const upload = await gateway.store.beginUpload(manifest);
await upload.write(0, image);
const stored = await upload.commit();

say({ t: 'start' }); // the bench samples the fleet process's CPU from here to `done`
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let firstOfferMs = -1;
let orderMs = -1;
/** When each device first entered each phase, ms since t0. */
const seen = new Map<string, Partial<Record<DevicePhase, number>>>();
const campaign = await gateway.startCampaign(stored);
campaign.on('order', () => {
  orderMs = performance.now() - t0;
});
campaign.on('progress', (p) => {
  const now = performance.now() - t0;
  if (firstOfferMs < 0 && p.phase === 'offering') firstOfferMs = now;
  let at = seen.get(p.id);
  if (!at) seen.set(p.id, at = {});
  at[p.phase] ??= now;
});
const complete = await new Promise<{ updated: number }>((resolve) => campaign.once('complete', resolve));
const wallMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
say({
  t: 'done', wallMs, firstOfferMs, cpuUserUs: cpu.user, cpuSysUs: cpu.system, updated: complete.updated,
  chunk: manifest.chunk, phases: phaseFigures(orderMs),
});
await gateway.stop();
process.exit(0);

/**
 * Where the wall time went. Campaign level: `probeMs` = start until the order is announced
 * (selection, RTT pings and throughput bursts of every device, ranking, planning); `lastVerifiedMs`
 * = until the last device's image was verified (its `activating`); `wallMs` - that = the tail of
 * reboots and confirmations. Per device (mean and max over the devices, ms): offer (offering ->
 * transferring), transfer (transferring -> verifying), verify (verifying -> activating),
 * activation -> confirm (activating -> done), and the wait from the order to its offer (queued).
 */
function phaseFigures(order: number): Record<string, number> {
  const spans: Record<string, number[]> = { queued: [], offer: [], transfer: [], verify: [], activateToConfirm: [] };
  let lastVerified = 0;
  let lastTransferStart = 0;
  const span = (name: string, a: number | undefined, b: number | undefined): void => {
    if (a !== undefined && b !== undefined) spans[name]!.push(b - a);
  };
  for (const at of seen.values()) {
    span('queued', order, at.offering);
    span('offer', at.offering, at.transferring);
    span('transfer', at.transferring, at.verifying);
    span('verify', at.verifying, at.activating);
    span('activateToConfirm', at.activating, at.done);
    lastVerified = Math.max(lastVerified, at.activating ?? 0);
    lastTransferStart = Math.max(lastTransferStart, at.transferring ?? 0);
  }
  const r = (x: number): number => Math.round(x * 10) / 10;
  const out: Record<string, number> = { probeMs: r(order), lastTransferStartMs: r(lastTransferStart), lastVerifiedMs: r(lastVerified) };
  for (const [name, xs] of Object.entries(spans)) {
    out[`${name}MeanMs`] = xs.length ? r(xs.reduce((a, b) => a + b, 0) / xs.length) : -1;
    out[`${name}MaxMs`] = xs.length ? r(Math.max(...xs)) : -1;
  }
  return out;
}
