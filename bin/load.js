// Shared by the bin entries: import a compiled entry point, or say how to build it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Import `rel` (relative to bin/); exit 2 with the next step when the package was not built. */
export async function loadCompiled(tool, rel) {
  const url = new URL(rel, import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    process.stderr.write(`${tool}: ${fileURLToPath(url)} is missing: this checkout is not built. Run \`npm run build\` (or use \`npm run ${tool === 'fwgate' ? 'gateway' : tool === 'fwpush' ? 'push' : tool === 'fwsim' ? 'sim' : 'sign'}\`, which runs the sources)\n`);
    process.exit(2);
  }
  return import(url.href);
}
