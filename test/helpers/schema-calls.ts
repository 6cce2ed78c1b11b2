import type { z } from 'zod';

/**
 * How many times `schema` validated something while `fn` ran: 0 means a decoder took its short
 * path for the reference encoding (docs/protocol.md §1.4, §6.6, §7.4) without the generic decoder
 * and schema. The schema's own `safeParse` is wrapped for the call and restored after.
 */
export function schemaCalls<T>(schema: z.ZodType, fn: () => T): { calls: number; value: T } {
  const own = Object.prototype.hasOwnProperty.call(schema, 'safeParse');
  const original = schema.safeParse;
  let calls = 0;
  schema.safeParse = ((...args: Parameters<typeof original>) => {
    calls += 1;
    return original.apply(schema, args);
  }) as typeof original;
  try {
    const value = fn();
    return { calls, value };
  } finally {
    if (own) schema.safeParse = original;
    else delete (schema as { safeParse?: unknown }).safeParse;
  }
}
