import { writeDevicesFile, generatePassword, hashPassword, type ScryptParams } from '../../gateway/device-auth.ts';

/** scrypt at N = 2^10 in tests: the same code path, a fraction of the cost of the default 2^14. */
export const TEST_SCRYPT: ScryptParams = { ln: 10, r: 8, p: 1 };

/** Write a device list for `ids` with fresh random passwords; returns id -> password. */
export async function writeDeviceList(path: string, ids: readonly string[]): Promise<Map<string, string>> {
  const passwords = new Map(ids.map((id) => [id, generatePassword()]));
  const entries = await Promise.all([...passwords].map(async ([id, pw]) => ({ id, scrypt: await hashPassword(pw, TEST_SCRYPT) })));
  await writeDevicesFile(path, entries);
  return passwords;
}
