import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { Manifest } from '../../protocol/manifest.ts';
import { generateSigningKey, parsePrivateKey, parsePublicKey, signManifest } from '../../protocol/signature.ts';

/** An Ed25519 key pair for tests: PEM text, KeyObjects and its key id. */
export interface TestKey {
  privateKeyPem: string;
  publicKeyPem: string;
  keyId: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function makeTestKey(): TestKey {
  const k = generateSigningKey();
  return { ...k, privateKey: parsePrivateKey(k.privateKeyPem), publicKey: parsePublicKey(k.publicKeyPem) };
}

let shared: TestKey | undefined;

/** The vendor key of this test process (made once): the Rig trusts and pins it, sampleImage signs with it. */
export function testKey(): TestKey {
  shared ??= makeTestKey();
  return shared;
}

let files: { key: string; pub: string } | undefined;

/** testKey() as files for the CLIs (fwpush --sign-key, fwgate --trusted-key, fwsim --pinned-key). */
export function testKeyFiles(): { key: string; pub: string } {
  if (!files) {
    const dir = mkdtempSync(join(tmpdir(), 'fwgate-test-key-'));
    // one folder per test process, removed when the process ends (it used to be left behind)
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const k = testKey();
    files = { key: join(dir, 'vendor.key'), pub: join(dir, 'vendor.pub') };
    writeFileSync(files.key, k.privateKeyPem, { mode: 0o600 });
    writeFileSync(files.pub, k.publicKeyPem);
  }
  return files;
}

/** A manifest signed with the test key (or `key`). */
export function signed(m: Manifest, key: TestKey = testKey()): Manifest {
  return signManifest(m, key.privateKey);
}
