import assert from 'node:assert/strict';
import { ByteSlab } from '../../../protocol/link/slab.ts';

describe('ByteSlab: many short arrays out of a few allocations', () => {
  it('hands out arrays of the asked length that share no byte with each other', () => {
    const slab = new ByteSlab(1024);
    const taken = Array.from({ length: 40 }, (_, i) => {
      const a = slab.take(10 + i);
      a.fill(i);
      return a;
    });
    taken.forEach((a, i) => {
      assert.equal(a.length, 10 + i);
      assert.ok(a.every((b) => b === i), `array ${i} was overwritten`);
    });
    // views of one slab while it lasts, then of the next
    assert.equal(taken[0]!.buffer, taken[1]!.buffer);
    assert.notEqual(taken[0]!.buffer, taken[39]!.buffer);
  });

  it('trim gives the tail of the latest array back to the next take, and only that', () => {
    const slab = new ByteSlab(1024);
    const a = slab.take(100);
    const t = slab.trim(a, 30);
    assert.equal(t.length, 30);
    assert.equal(t.byteOffset, a.byteOffset);
    const b = slab.take(20);
    assert.equal(b.byteOffset, a.byteOffset + 30, 'the next array starts where the trimmed one ends');
    t.fill(1);
    b.fill(2);
    assert.ok(t.every((x) => x === 1));
    // an array that is not the latest is only cut: its tail is not handed out again
    const c = slab.take(10);
    slab.trim(b, 5);
    assert.equal(slab.take(1).byteOffset, c.byteOffset + 10);
    assert.throws(() => slab.trim(c, 11), RangeError);
  });

  it('gives a large request an allocation of its own', () => {
    const slab = new ByteSlab(1024);
    const small = slab.take(8);
    const big = slab.take(300);
    assert.notEqual(big.buffer, small.buffer);
    assert.equal(big.byteLength, 300);
    assert.equal(slab.take(8).buffer, small.buffer, 'the slab goes on after it');
  });

  it('refuses a slab size that is not a positive integer', () => {
    assert.throws(() => new ByteSlab(0), RangeError);
    assert.throws(() => new ByteSlab(1.5), RangeError);
  });
});
