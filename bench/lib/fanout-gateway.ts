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
  broker: { host: '127.0.0.1', port: 0 },
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

const cpu0 = process.cpuUsage();
const t0 = performance.now();
let firstOfferMs = -1;
const campaign = await gateway.startCampaign(stored);
campaign.on('progress', (p) => {
  if (firstOfferMs < 0 && p.phase === 'offering') firstOfferMs = performance.now() - t0;
});
const complete = await new Promise<{ updated: number }>((resolve) => campaign.once('complete', resolve));
const wallMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
say({
  t: 'done', wallMs, firstOfferMs, cpuUserUs: cpu.user, cpuSysUs: cpu.system, updated: complete.updated,
  chunk: manifest.chunk,
});
await gateway.stop();
process.exit(0);
