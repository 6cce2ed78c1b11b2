import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Flash } from '../../device-sim/flash.ts';
import { tempDir } from './helpers.ts';

describe('device-sim: Flash.writeOwned (a buffer handed over, not copied)', function () {
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => dir.remove());

  for (const fsync of [false, true]) {
    it(`${fsync ? 'with' : 'without'} fsync: the same model as write() — bounds checked, durable on flush only, lost at a power cut`, async () => {
      const f = new Flash(join(dir.path, 'slot.bin'), 8, { fsync });
      assert.throws(() => f.writeOwned(6, new Uint8Array(3)), RangeError);
      assert.throws(() => f.writeOwned(-1, new Uint8Array(1)), RangeError);
      f.writeOwned(0, Uint8Array.from([1, 2]));
      f.writeOwned(2, Uint8Array.from([3, 4]).subarray(0, 2)); // a view, as decoded chunk data is
      assert.equal(f.pendingBytes, 4);
      assert.equal((await f.read()).length, 0, 'nothing durable before flush');
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from([1, 2, 3, 4]));
      f.writeOwned(4, Uint8Array.from([5]));
      assert.equal(f.powerCut(), 1);
      await f.flush();
      assert.deepEqual(await f.read(), Uint8Array.from([1, 2, 3, 4]), 'the write lost at the cut never reached the file');
      f.close();
    });
  }
});
