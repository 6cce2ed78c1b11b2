/**
 * The whole-number flag parser of a benchmark: `int(value, name, min, max)` returns the number,
 * or writes what was wrong (which flag, its range, the value given) and exits with 2.
 */
export function intFlag(bench: string): (v: string, name: string, min: number, max: number) => number {
  return (v, name, min, max) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`${bench}: --${name} must be a whole number from ${min} to ${max}, got "${v}"\n`);
      process.exit(2);
    }
    return n;
  };
}
