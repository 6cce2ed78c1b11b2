import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import { parseReleaseManifest, releaseDigest, signRelease } from '../protocol/release.ts';
import { parsePrivateKey } from '../protocol/signature.ts';
import { describeRelease, readReleaseDescription } from './release-description.ts';
import { parseSeq } from './signing.ts';

/**
 * `fwsign release <desc.json> --key <file> [--out <file>]` (docs/operations.md "Releases"): the
 * release manifest (docs/protocol.md §5.5) of a release description, computed from its component
 * files and signed with the vendor key. fwpush then uploads the release with
 * `fwpush release <desc.json> --manifest <file>`. Exit codes as fwsign's: 0 signed, 2 usage
 * (also a refused seq or an invalid description), 1 a file that cannot be written.
 */
function program(): Command {
  return new Command('fwsign release')
    .description('Sign a multi-component release: compute the release manifest of <description> (sizes, CRC-32, SHA-256 of each component file) and sign it with the vendor key.')
    .argument('<description>', 'the release description (JSON: release, version, hw, chunk?, seq?, components [{component, file, name?, version, requires?, agent?}])')
    .requiredOption('-k, --key <file>', 'vendor signing key (Ed25519 private key, PKCS#8 PEM)')
    .option('--seq <n>', 'anti-rollback sequence number (overrides the description\'s seq)', parseSeq)
    .option('--allow-seq-zero', 'sign with seq 0 (only for a first release)')
    .option('-o, --out <file>', 'where to write the signed release manifest (default: <release>-<version>.release.json next to the description)')
    .option('--force', 'overwrite an existing --out file')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`${s.trimEnd()} (see fwsign release --help)\n`) });
}

interface ReleaseSignOpts { key: string; seq?: number; allowSeqZero?: boolean; out?: string; force?: boolean }

export async function releaseMain(argv: readonly string[]): Promise<number> {
  const cmd = program();
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode === 0 ? 0 : 2;
  }
  try {
    return await signReleaseFile(cmd.args[0]!, cmd.opts<ReleaseSignOpts>());
  } catch (err) {
    console.error(`fwsign: ${describeError(err)}`);
    return err instanceof FwError && (err.code === 'E_USAGE' || err.code === 'E_MANIFEST_INVALID') ? 2 : 1;
  }
}

async function signReleaseFile(descPath: string, o: ReleaseSignOpts): Promise<number> {
  const loaded = await readReleaseDescription(descPath);
  const seq = o.seq ?? loaded.manifest.seq ?? 0;
  if (seq === 0 && !o.allowSeqZero) {
    throw new FwError('E_USAGE', 'seq 0 (no seq in the description, no --seq): a device that installed a release with a higher seq refuses it (seq-rollback); give "seq" in the description or --seq <n> (--allow-seq-zero for a first release)');
  }
  const keyPem = await readFile(o.key, 'utf8').catch((err: Error) => {
    throw new FwError('E_USAGE', `cannot read signing key ${o.key}: ${err.message}`);
  });
  const signed = parseReleaseManifest(signRelease({ ...loaded.manifest, seq }, parsePrivateKey(keyPem)));
  const out = o.out ?? join(dirname(descPath), `${signed.release}-${signed.version}.release.json`);
  try {
    await writeFile(out, `${JSON.stringify(signed, null, 2)}\n`, { flag: o.force ? 'w' : 'wx' });
  } catch (err) {
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    throw new FwError(exists ? 'E_USAGE' : 'E_STORE_IO', `cannot write ${out}: ${(err as Error).message}${exists ? ' (--force overwrites it)' : ''}`);
  }
  console.log(`signed release ${describeRelease(signed)}, seq ${seq}, key ${signed.signature!.keyId}: ${out}`);
  console.log(`release digest ${releaseDigest(signed)}`);
  return 0;
}
