import semver from 'semver';

/** Strict semantic version check (semver 2.0.0, no leading "v", no loose forms). */
export function isValidVersion(v: string): boolean {
  return semver.valid(v, { loose: false }) === v;
}

/** <0 when a is older than b, 0 when equal precedence, >0 when newer (semver 2.0.0 §11). */
export function compareVersions(a: string, b: string): number {
  return semver.compare(a, b, { loose: false });
}

export function isOlder(running: string, candidate: string): boolean {
  return compareVersions(running, candidate) < 0;
}
