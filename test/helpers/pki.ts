import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestPki {
  /** PEM file paths. */
  ca: string;
  serverCert: string;
  serverKey: string;
  /** A client certificate and key per name given (CN = the name). */
  clients: Map<string, { cert: string; key: string }>;
}

/**
 * A throw-away PKI for TLS tests, made with the openssl CLI at run time: an EC P-256 CA, a server
 * certificate for 127.0.0.1 / localhost, and one client certificate per CN, all valid for a day.
 * Nothing is kept: the files live in `dir`, which the test removes.
 */
export async function makeTestPki(dir: string, clientCns: readonly string[]): Promise<TestPki> {
  const p = (name: string): string => join(dir, name);
  const ossl = (...args: string[]): Promise<unknown> => run('openssl', args, { timeout: 20_000 });
  const key = (file: string): Promise<unknown> => ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  await key(p('ca.key'));
  await ossl('req', '-x509', '-new', '-key', p('ca.key'), '-subj', '/CN=fwgate test CA', '-days', '1', '-out', p('ca.crt'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const sign = async (name: string, cn: string, ext: string): Promise<void> => {
    await key(p(`${name}.key`));
    await ossl('req', '-new', '-key', p(`${name}.key`), '-subj', `/CN=${cn}`, '-out', p(`${name}.csr`));
    await writeFile(p(`${name}.ext`), ext);
    await ossl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-days', '1', '-extfile', p(`${name}.ext`), '-out', p(`${name}.crt`));
  };
  await sign('server', 'fwgate test broker', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  const clients = new Map<string, { cert: string; key: string }>();
  for (const cn of clientCns) {
    await sign(`client-${cn}`, cn, 'extendedKeyUsage=clientAuth\n');
    clients.set(cn, { cert: p(`client-${cn}.crt`), key: p(`client-${cn}.key`) });
  }
  return { ca: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'), clients };
}
