import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { describeError, FwError } from '../protocol/errors.ts';
import { DEFAULT_CHUNK_SIZE, manifestForImage, parseManifest } from '../protocol/manifest.ts';
import { parsePrivateKey, signManifest } from '../protocol/signature.ts';
import { readReleaseState, recordRelease, seqRefusal } from './release-state.ts';
import { keygen, parseSeq } from './signing.ts';
import { releaseMain } from './fwsign-release.ts';
import { TOOL_VERSION } from '../protocol/tool-version.ts';

/**
 * fwsign — signs a release on the vendor's build machine (docs/security.md "Signing releases on
 * the build machine"): makes the manifest of an image (name, version, hardware models, seq) and
 * signs it with the vendor key, so the field laptop needs only its technician key and the signed
 * manifest. `--seq` is required; with `--state` a seq not above the last one signed is refused.
 * Like imgtool, `--version` is the image's version; fwsign's own is `-V` / `--tool-version`.
 * Exit codes: 0 signed, 2 usage error (also a refused seq), 1 a file that cannot be written.
 */
function program(): Command {
  return new Command('fwsign')
    .description('Sign a firmware release on the build machine: make the manifest of <image> and sign it with the vendor key. The field laptop then pushes it with `fwpush --manifest <file>` and its technician key only.')
    .argument('<image>', 'the firmware image file')
    .requiredOption('-k, --key <file>', 'vendor signing key (Ed25519 private key, PKCS#8 PEM, from `fwsign keygen`)')
    .requiredOption('--version <semver>', 'the image\'s version (fwsign\'s own version: -V, --tool-version)')
    .requiredOption('--hw <models>', 'comma-separated hardware models the image is for')
    .requiredOption('--seq <n>', 'anti-rollback sequence number: above every release the devices have installed (1 or more)', parseSeq)
    .option('--name <name>', 'image name (default: the file name without extension)')
    .option('--chunk <bytes>', 'chunk size towards devices', (v: string) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`--chunk must be a whole number, got "${v}"`);
      return Number(v);
    }, DEFAULT_CHUNK_SIZE)
    .option('-o, --out <file>', 'where to write the signed manifest (default: <image>.manifest.json next to the image)')
    .option('--state <file>', 'record of the releases signed: refuses a --seq not above the last one, then records this one')
    .option('--allow-seq-zero', 'sign with --seq 0 (devices treat a manifest without seq as 0: only for a first release)')
    .option('--force', 'overwrite an existing --out file')
    .option('-V, --tool-version', 'print fwsign\'s own version and exit')
    .addHelpText('after', `
Commands:
  fwsign keygen --out <base>    make an Ed25519 key pair (<base>.key, <base>.pub)
  fwsign release <desc.json> --key <file> [--out <file>]   sign a multi-component release (fwsign release --help)

Example:
  fwsign keygen --out keys/vendor-2026
  fwsign image.bin --key keys/vendor-2026.key --version 1.2.0 --hw sensor-v1 --seq 12 --state keys/releases.json
  # -> image.manifest.json; on the laptop: fwpush --port /dev/ttyUSB0 --tech-key alice.key image.bin --manifest image.manifest.json`)
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`${s.trimEnd()} (see fwsign --help)\n`) });
}

interface SignOpts { key: string; version: string; hw: string; seq: number; name?: string; chunk: number; out?: string; state?: string; allowSeqZero?: boolean; force?: boolean }

export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'keygen') return keygen(argv.slice(1), (l) => console.log(l), (l) => console.error(l));
  if (argv[0] === 'release') return releaseMain(argv.slice(1));
  if (argv.includes('-V') || argv.includes('--tool-version')) {
    console.log(`fwsign ${TOOL_VERSION}`);
    return 0;
  }
  const cmd = program();
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode === 0 ? 0 : 2;
  }
  const o = cmd.opts<SignOpts>();
  const imagePath = cmd.args[0]!;
  try {
    return await sign(imagePath, o);
  } catch (err) {
    console.error(`fwsign: ${describeError(err)}`);
    return err instanceof FwError && err.code === 'E_USAGE' ? 2 : 1;
  }
}

async function sign(imagePath: string, o: SignOpts): Promise<number> {
  if (o.seq === 0 && !o.allowSeqZero) {
    throw new FwError('E_USAGE', '--seq 0 is what a manifest without seq means: a device that installed a release with a higher seq refuses it (seq-rollback); give the next seq (or --allow-seq-zero for a first release)');
  }
  const state = o.state ? await readReleaseState(o.state) : undefined;
  const refusal = seqRefusal(state, o.seq);
  if (refusal) throw new FwError('E_USAGE', refusal);
  const image = await readFile(imagePath).catch((err: Error) => {
    throw new FwError('E_USAGE', `cannot read image ${imagePath}: ${err.message}`);
  });
  const keyPem = await readFile(o.key, 'utf8').catch((err: Error) => {
    throw new FwError('E_USAGE', `cannot read signing key ${o.key}: ${err.message}`);
  });
  const key = parsePrivateKey(keyPem);
  const name = o.name ?? basename(imagePath).replace(/\.[^.]*$/, '');
  const hw = o.hw.split(',').map((s) => s.trim()).filter(Boolean);
  const manifest = parseManifest(signManifest(manifestForImage(image, { name, version: o.version, hw, chunk: o.chunk, seq: o.seq }), key));
  const out = o.out ?? imagePath.replace(/(\.[^./]*)?$/, '.manifest.json');
  try {
    await writeFile(out, `${JSON.stringify(manifest, null, 2)}\n`, { flag: o.force ? 'w' : 'wx' });
  } catch (err) {
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    throw new FwError(exists ? 'E_USAGE' : 'E_STORE_IO', `cannot write ${out}: ${(err as Error).message}${exists ? ' (--force overwrites it)' : ''}`);
  }
  if (o.state) await recordRelease(o.state, state, { seq: o.seq, name, version: o.version, sha256: manifest.sha256, keyId: manifest.signature!.keyId, at: new Date().toISOString() });
  console.log(`signed ${name} ${o.version} for ${hw.join(', ')}, seq ${o.seq}, key ${manifest.signature!.keyId}: ${out}`);
  return 0;
}
