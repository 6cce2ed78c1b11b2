import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ROOT } from '../../scripts/lib/processes.ts';
import { readFleetFile } from '../../gateway/fleet-store.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * The README's "The three programs" walk-through, followed as written on this machine: its first
 * shell block is read from README.md and run line by line from the repository root. Only what a
 * test must own is changed: `site/` becomes a temp dir, the broker port a free one, 20 devices 3,
 * and `npm run <script> --` the script's own command with `node --import tsx` (a stopped
 * `npm run` would leave its program running).
 */
describe('README: the three programs, as written', function () {
  this.timeout(240_000);
  let site: string;
  const background: ChildProcess[] = [];
  afterEach(async () => {
    for (const p of background.reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    background.length = 0;
    await rm(site, { recursive: true, force: true });
  });

  it('completes a push to the simulated fleet with the signed release and the technician key', async () => {
    site = await mkdtemp(join(tmpdir(), 'fwgate-readme-'));
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## The three programs'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
    const scripts = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    const port = await freePort();
    const lines = block.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean);
    assert.ok(lines.some((l) => l.startsWith('npm run push -- --port')), 'the block ends with a push');
    for (const raw of lines) {
      const line = raw
        .replaceAll('site/', `${site}/`).replace(/^mkdir -p site$/, `mkdir -p ${site}`)
        .replaceAll('1883', String(port)).replace('--count 20', '--count 3')
        .replace(/^npm run (\w+)(?: --)?/, (_m, name: string) => {
          const cmd = scripts[name];
          assert.ok(cmd?.startsWith('tsx '), `npm run ${name} is a tsx script`);
          return cmd!.replace(/^tsx /, `${JSON.stringify(process.execPath)} --import tsx `);
        });
      if (raw.startsWith('npm run push -- --port')) {
        // as a person would: the devices have reported (the gateway logs `device online`) before the push
        await waitUntil(async () => (await readFleetFile(join(site, 'gateway', 'fleet.json')).catch(() => undefined))?.devices.filter((d) => d.online).length === 3, 60_000, '3 devices online in the fleet report', 200);
      }
      if (line.endsWith('&')) {
        const child = spawn('bash', ['-c', `exec ${line.slice(0, -1)}`], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
        child.stderr!.resume();
        background.push(child);
        continue;
      }
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn('bash', ['-c', line], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
        child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
        const t = setTimeout(() => child.kill('SIGKILL'), 180_000);
        child.once('exit', (code) => {
          clearTimeout(t);
          resolve({ code, out });
        });
      });
      assert.equal(r.code, 0, `${raw}\n${r.out}`);
      if (raw.startsWith('npm run push -- --port')) assert.match(r.out, /Done: 3\/3 targeted devices updated/, r.out);
    }
    // the gateway's own record: every device runs 1.1.0
    const results = async (): Promise<string> => JSON.stringify((await readFleetFile(join(site, 'gateway', 'fleet.json')))?.devices.map((d) => [d.version, d.lastResult?.outcome]));
    await waitUntil(async () => (await results()) === JSON.stringify([['1.1.0', 'updated'], ['1.1.0', 'updated'], ['1.1.0', 'updated']]), 20_000, 'the fleet report: 3 devices updated to 1.1.0', 200);
  });
});
