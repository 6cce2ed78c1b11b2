import assert from 'node:assert/strict';
import { ByteSlab } from '../../../protocol/link/slab.ts';

// ByteSlab at its bounds: the quarter-slab limit, a slab used up exactly, and which trim gives bytes back.

describe('ByteSlab bounds', () => {
  it('a slab of one byte is allowed; zero and fractions are refused', () => {
    const slab = new ByteSlab(1);
    assert.equal(slab.take(1).length, 1);
    for (const bad of [0, -1, 2.5]) {
      assert.throws(() => new ByteSlab(bad), (e: Error) => e instanceof RangeError && e.message === 'slab size must be a positive integer', String(bad));
    }
    assert.throws(() => slab.trim(slab.take(1), 2), (e: Error) => e instanceof RangeError && e.message === 'cannot trim an array to more than its length');
  });

  it('64 KiB slabs by default', () => {
    const slab = new ByteSlab();
    assert.equal(slab.slabSize, 64 * 1024);
    const a = slab.take(16 * 1024);
    assert.equal(slab.take(16 * 1024).buffer, a.buffer, 'a quarter slab still comes from the slab');
  });

  it('a quarter slab comes from the slab; one byte more gets its own allocation', () => {
    const slab = new ByteSlab(1024);
    const small = slab.take(1);
    assert.equal(slab.take(256).buffer, small.buffer);
    const own = slab.take(257);
    assert.notEqual(own.buffer, small.buffer);
    assert.equal(own.buffer.byteLength, 257);
  });

  it('a slab is used up to its last byte before the next one is allocated', () => {
    const slab = new ByteSlab(1024);
    const parts = Array.from({ length: 4 }, () => slab.take(256));
    assert.ok(parts.every((p) => p.buffer === parts[0]!.buffer), 'four quarters fill one slab');
    assert.deepEqual(parts.map((p) => p.byteOffset - parts[0]!.byteOffset), [0, 256, 512, 768]);
    const next = slab.take(1);
    assert.notEqual(next.buffer, parts[0]!.buffer);
    assert.equal(next.byteOffset, 0);
  });

  it('trim to the full length is allowed; a second trim of the same array gives nothing back', () => {
    const slab = new ByteSlab(1024);
    const a = slab.take(100);
    assert.equal(slab.trim(a, 100).length, 100);
    const b = slab.take(100);
    assert.equal(b.byteOffset, a.byteOffset + 100);
    slab.trim(b, 50);
    slab.trim(b, 10);
    assert.equal(slab.take(1).byteOffset, b.byteOffset + 50, 'only the first trim of the latest array returns its tail');
  });

  it('after an allocation of its own, the slab array before it is no longer the latest', () => {
    const slab = new ByteSlab(1024);
    const a = slab.take(100);
    slab.take(300);
    const t = slab.trim(a, 10);
    assert.equal(t.length, 10);
    assert.equal(slab.take(1).byteOffset, a.byteOffset + 100, 'its tail stays taken');
  });
});
