import { readFile } from 'node:fs/promises';
import { FwError } from '../protocol/errors.ts';
import { parsePrivateKey } from '../protocol/signature.ts';
import { technicianKey, type TechnicianKey } from '../protocol/uplink-auth.ts';

/**
 * `--tech-key <file>`: the technician's Ed25519 private key (PKCS#8 PEM, as `fwpush keygen`
 * writes it) that answers the gateway's hello challenge (docs/protocol.md §7.2.4). A file that
 * cannot be read or is not such a key is a usage error.
 */
export async function loadTechKey(path: string): Promise<TechnicianKey> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new FwError('E_USAGE', `cannot read technician key ${path}: ${(err as Error).message}`);
  }
  try {
    return technicianKey(parsePrivateKey(pem));
  } catch (err) {
    throw new FwError('E_USAGE', `technician key ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** What to do after the gateway refused a request to send as `unauthorised`. */
export function unauthorisedHint(techKey: string | undefined): string {
  return techKey === undefined
    ? 'give --tech-key <file> with a technician key this gateway trusts (uplink.technicianKeys)'
    : `check that the public key of ${techKey} is listed in the gateway's uplink.technicianKeys`;
}
