import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeSampleImage } from '../../firmware-samples/image-format.ts';
import { manifestForImage, parseManifest } from '../../protocol/manifest.ts';
import { KeyRing, parsePrivateKey, parsePublicKey, signManifest } from '../../protocol/signature.ts';
import { ROOT } from '../../scripts/lib/processes.ts';
import { closeSerialPort } from '../../transport/serial-port.ts';
import { Rig } from '../helpers/rig.ts';
import { startFwpush } from './run-fwpush.ts';

/** `fwpush keygen`, then pushes signed with `--sign-key` over the pty (docs/protocol.md §5.4). */
function keygen(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'laptop/cli.ts', 'keygen', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('fwpush keygen hung')); }, 30_000);
    child.once('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

describe('fwpush keygen and --sign-key end to end (pty, gateway, simulated devices)', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'fwpush-keys-'));
  const base = join(dir, 'vendor');
  let rig: Rig | undefined;
  let image: string;
  let keyId: string;

  before(async () => {
    const r = await keygen(['--out', base]);
    assert.equal(r.code, 0, r.stderr);
    keyId = /key id ([0-9a-f]{16})/.exec(r.stdout)?.[1] ?? '';
    const pub = await readFile(`${base}.pub`, 'utf8');
    rig = await Rig.start({ devices: 2, config: { security: { trustedKeys: [{ publicKey: pub }] } }, device: { pinnedKeys: [pub] } });
    rig.laptopLink.close();
    await closeSerialPort(rig.laptopPort);
    image = join(rig.dir, 'sensor-fw-1.1.0.bin');
    await writeFile(image, makeSampleImage({ name: 'sensor-fw', version: '1.1.0', hw: 'sensor-v1', size: 32 * 1024 }));
  });
  after(async () => {
    await rig?.stop();
  });

  const tech = (): string[] => ['--tech-key', rig!.techKeyPath];

  it('keygen writes a 0600 PKCS#8 private key and an SPKI public key, prints the key id, and will not overwrite', async () => {
    assert.match(keyId, /^[0-9a-f]{16}$/);
    assert.equal((await stat(`${base}.key`)).mode & 0o777, 0o600);
    const pub = parsePublicKey(await readFile(`${base}.pub`, 'utf8'));
    const priv = parsePrivateKey(await readFile(`${base}.key`, 'utf8'));
    assert.equal(new KeyRing([pub]).check(signManifest(manifestForImage(Buffer.from('x'), { name: 'a', version: '1.0.0', hw: ['h'] }), priv)).ok, true);
    const again = await keygen(['--out', base]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /--force/);
  });

  it('an unsigned manifest is refused by the gateway, naming it: exit 4', async () => {
    const manifest = join(dir, 'unsigned.json');
    await writeFile(manifest, JSON.stringify(manifestForImage(await readFile(image), { name: 'sensor-fw', version: '1.1.0', hw: ['sensor-v1'] })));
    const r = await startFwpush(['--port', rig!.pty.b, ...tech(), image, '--manifest', manifest]).exited;
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /unsigned.*no signature/);
  });

  it('signing a generated manifest needs --seq: usage error, exit 2', async () => {
    const r = await startFwpush(['--port', rig!.pty.b, ...tech(), image, '--version', '1.1.0', '--hw', 'sensor-v1', '--sign-key', `${base}.key`]).exited;
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /--seq/);
  });

  it('fwpush --sign-key --seq signs the manifest it makes; the gateway and the devices accept it: exit 0', async () => {
    const r = await startFwpush(['--port', rig!.pty.b, ...tech(), image, '--name', 'sensor-fw', '--version', '1.1.0', '--hw', 'sensor-v1', '--sign-key', `${base}.key`, '--seq', '2']).exited;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const d of rig!.sims.devices) assert.equal(d.running?.version, '1.1.0');
    const stored = rig!.gateway.store.list().at(-1)!;
    assert.equal(stored.manifest.signature?.keyId, keyId);
    assert.equal(stored.manifest.seq, 2);
  });

  it('a manifest the vendor already signed passes through unchanged; adding --sign-key to it is a usage error', async () => {
    const bytes = makeSampleImage({ name: 'sensor-fw', version: '1.2.0', hw: 'sensor-v1', size: 32 * 1024 });
    const img = join(dir, 'sensor-fw-1.2.0.bin');
    await writeFile(img, bytes);
    const m = signManifest(manifestForImage(bytes, { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], seq: 3 }), parsePrivateKey(await readFile(`${base}.key`, 'utf8')));
    const file = join(dir, 'signed.json');
    await writeFile(file, JSON.stringify(m));
    const twice = await startFwpush(['--port', rig!.pty.b, ...tech(), img, '--manifest', file, '--sign-key', `${base}.key`]).exited;
    assert.equal(twice.code, 2, twice.stdout + twice.stderr);
    assert.match(twice.stdout + twice.stderr, /already signed/);
    const r = await startFwpush(['--port', rig!.pty.b, ...tech(), img, '--manifest', file]).exited;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(rig!.gateway.store.list().find((s) => s.manifest.version === '1.2.0')?.manifest, parseManifest(m));
  });
});
