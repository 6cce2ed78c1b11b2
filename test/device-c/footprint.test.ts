import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FLASH_LIMIT, RAM_LIMIT, measureFootprint } from '../../scripts/footprint.ts';

/**
 * The core's Cortex-M4 footprint (npm run footprint): within the targets of the device kit (24 KiB
 * flash, 8 KiB RAM without chunk buffers), and the figures docs/device-guide.md gives are the ones
 * measured when the compiler is the one the guide names.
 */
describe('device-c: footprint of the core on Cortex-M4 (arm-none-eabi-gcc -Os)', function () {
  this.timeout(120_000);

  it('fits 24 KiB of flash and 8 KiB of RAM, and the guide reports what was measured', async () => {
    const f = await measureFootprint();
    assert.ok(f.flash <= FLASH_LIMIT, `flash ${f.flash} > ${FLASH_LIMIT}`);
    assert.ok(f.ram <= RAM_LIMIT, `RAM ${f.ram} > ${RAM_LIMIT}`);
    assert.ok(f.core.text > 4096, 'the core was linked, not collected away');
    const guide = readFileSync(fileURLToPath(new URL('../../docs/device-guide.md', import.meta.url)), 'utf8');
    const row = /^\| core \(device-c\/core\) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$/m.exec(guide);
    assert.ok(row, 'docs/device-guide.md has the footprint table row "| core (device-c/core) | text | rodata | data | bss |"');
    if (guide.includes(f.compiler)) {
      assert.deepEqual(row.slice(1).map(Number), [f.core.text, f.core.rodata, f.core.data, f.core.bss], `measured with ${f.compiler}`);
    }
  });
});
