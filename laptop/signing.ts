import { chmod, readFile, writeFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from 'commander';
import { FwError } from '../protocol/errors.ts';
import { parseManifest, type Manifest } from '../protocol/manifest.ts';
import { generateSigningKey, parsePrivateKey, signManifest } from '../protocol/signature.ts';

/**
 * Manifest signing for fwpush (docs/protocol.md §5.4, docs/operations.md "Signing keys"):
 * `fwpush keygen --out <base>` makes a key pair; `--sign-key <file>` signs the manifest fwpush
 * makes or is given; a manifest the vendor already signed passes through unchanged.
 */

/** What the signing flags ask for. */
export interface SigningOpts { signKey?: string; seq?: number; allowSeqZero?: boolean }

/** `--seq <n>`: a whole number 0 .. 2^32 - 1. */
export function parseSeq(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 0xffff_ffff) throw new InvalidArgumentError(`--seq must be a whole number from 0 to 4294967295, got "${v}"`);
  return n;
}

/**
 * The manifest to send: `generated` says whether fwpush made it from flags. A generated manifest
 * takes `--seq` (required with `--sign-key`: forgetting it would make seq 0, below every device's).
 * A given manifest that is already signed passes through unchanged (`--sign-key`/`--seq` with it
 * are usage errors); an unsigned one is signed when `--sign-key` is given.
 */
export async function applySigning(manifest: Manifest, generated: boolean, o: SigningOpts): Promise<Manifest> {
  if (manifest.signature) {
    if (o.signKey !== undefined || o.seq !== undefined) {
      throw new FwError('E_USAGE', `the manifest is already signed (key ${manifest.signature.keyId}); it is sent unchanged — drop --sign-key and --seq`);
    }
    return manifest;
  }
  if (o.signKey === undefined) {
    if (o.seq !== undefined) return parseManifest({ ...manifest, seq: o.seq });
    return manifest;
  }
  if (generated && o.seq === undefined && manifest.seq === undefined) {
    throw new FwError('E_USAGE', 'signing a generated manifest needs --seq <n>, the anti-rollback sequence number (higher than any image the devices have installed)');
  }
  if ((o.seq ?? manifest.seq ?? 0) === 0 && !o.allowSeqZero) {
    throw new FwError('E_USAGE', 'refusing to sign with seq 0 (a manifest without seq is 0): a device that installed a release with a higher seq refuses it (seq-rollback); give --seq <n>, or --allow-seq-zero for a first release. Better: sign on the build machine with fwsign');
  }
  let pem: string;
  try {
    pem = await readFile(o.signKey, 'utf8');
  } catch (err) {
    throw new FwError('E_USAGE', `cannot read signing key ${o.signKey}: ${(err as Error).message}`);
  }
  const key = parsePrivateKey(pem);
  return parseManifest(signManifest({ ...manifest, ...(o.seq !== undefined ? { seq: o.seq } : {}) }, key));
}

/**
 * `fwpush keygen --out <base>`: writes `<base>.key` (PKCS#8 PEM, mode 0600) and `<base>.pub`
 * (SPKI PEM), refuses to overwrite, prints the key id. Returns the exit code.
 */
export async function keygen(argv: readonly string[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const cmd = new Command('fwpush keygen')
    .description('Make an Ed25519 key pair for signing firmware manifests: <base>.key (private, keep it secret) and <base>.pub (give it to fwgate --trusted-key and fwsim --pinned-key).')
    .requiredOption('-o, --out <base>', 'path and base name of the two files, e.g. keys/vendor-2025')
    .option('--force', 'overwrite existing files')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out(s.trimEnd()), writeErr: (s) => err(s.trimEnd()) });
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (e) {
    return (e as { exitCode?: number }).exitCode === 0 ? 0 : 2;
  }
  const o = cmd.opts<{ out: string; force?: boolean }>();
  const k = generateSigningKey();
  const flag = o.force ? 'w' : 'wx';
  try {
    await writeFile(`${o.out}.key`, k.privateKeyPem, { mode: 0o600, flag });
    await chmod(`${o.out}.key`, 0o600);
    await writeFile(`${o.out}.pub`, k.publicKeyPem, { mode: 0o644, flag });
  } catch (e) {
    err(`E_USAGE: cannot write the key pair: ${(e as Error).message}${(e as NodeJS.ErrnoException).code === 'EEXIST' ? ' (use --force to overwrite)' : ''}`);
    return 2;
  }
  out(`key id ${k.keyId}`);
  out(`private key ${o.out}.key (keep it secret; fwpush --sign-key)`);
  out(`public key  ${o.out}.pub (fwgate --trusted-key, fwsim --pinned-key)`);
  return 0;
}
