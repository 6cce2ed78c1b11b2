/**
 * Many short byte arrays carved out of a few larger allocations. The link makes one wire buffer
 * per DATA frame sent and one payload copy per frame received, thousands a second during an
 * upload, and in V8 every ArrayBuffer has a fixed cost well above that of encoding or checking a
 * 4 KiB frame (here: `new Uint8Array(4096)` ≈ 14 µs, `Buffer.allocUnsafeSlow` of 4 KiB or
 * 256 KiB ≈ 3–4 µs; the garbage collector's accounting of memory outside its heap). A region is
 * handed out once and never reused: when a slab is used up the next one is a new allocation, and
 * the old one is freed once no view of it is left — so a view that is kept holds its whole slab
 * (at most `slabSize` bytes) in memory. Slabs are not zero-filled: the caller writes every byte
 * of what it takes.
 */
export class ByteSlab {
  readonly slabSize: number;
  #slab: Uint8Array;
  #used = 0;
  #last: Uint8Array | undefined;

  constructor(slabSize = 64 * 1024) {
    if (!Number.isInteger(slabSize) || slabSize < 1) throw new RangeError('slab size must be a positive integer');
    this.slabSize = slabSize;
    this.#slab = new Uint8Array(0);
  }

  /**
   * `length` bytes of their own (not initialised: write them all): no other view handed out
   * shares any of them. Requests larger than a quarter slab get an allocation of their own (a
   * slab is never mostly one array).
   */
  take(length: number): Uint8Array {
    if (length > this.slabSize / 4) {
      this.#last = undefined;
      return new Uint8Array(length);
    }
    if (this.#used + length > this.#slab.length) {
      const slab = Buffer.allocUnsafeSlow(this.slabSize);
      this.#slab = new Uint8Array(slab.buffer, slab.byteOffset, slab.length);
      this.#used = 0;
    }
    // (a constructor call: subarray() looks up the species constructor, several times slower)
    const view = new Uint8Array(this.#slab.buffer, this.#used, length);
    this.#used += length;
    this.#last = view;
    return view;
  }

  /**
   * The first `length` bytes of `view`, the array the latest take() returned; the rest goes back
   * to the slab for the next take(). Any other array is just cut to `length`.
   */
  trim(view: Uint8Array, length: number): Uint8Array {
    if (length > view.length) throw new RangeError('cannot trim an array to more than its length');
    if (view === this.#last) {
      this.#used -= view.length - length;
      this.#last = undefined;
    }
    return new Uint8Array(view.buffer, view.byteOffset, length);
  }
}
