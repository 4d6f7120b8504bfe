/**
 * Protocol versions this build speaks, newest first. Additive changes bump the minor, and a version speaks every
 * earlier minor of its major: a method of the table says since which version it exists (methods.ts, `since`),
 * and a session of an earlier version neither advertises nor calls it.
 * 1.0.0: the first contract. 1.1.0: live migration (vm/receiveMigration, vm/migrate, their `tls`).
 */
export const PROTOCOL_VERSIONS: readonly string[] = ['1.1.0'];

/** The version of every method of the table that does not say otherwise. */
export const FIRST_PROTOCOL_VERSION = '1.0.0';

interface Semver {
  major: number;
  minor: number;
  patch: number;
}

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;

export function parseSemver(v: string): Semver | undefined {
  const m = SEMVER.exec(v);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
}

function compare(a: Semver, b: Semver): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/**
 * Picks the version both sides speak: the highest common major, and within it the lower of the two
 * sides' newest versions (the older side does not know the newer side's additions).
 * Returns undefined when no major is shared.
 */
export function negotiateVersion(ours: readonly string[], theirs: readonly string[]): string | undefined {
  const a = ours.map(parseSemver).filter((v): v is Semver => v !== undefined);
  const b = theirs.map(parseSemver).filter((v): v is Semver => v !== undefined);
  const majors = [...new Set(a.map((v) => v.major))].filter((m) => b.some((v) => v.major === m)).sort((x, y) => y - x);
  const major = majors[0];
  if (major === undefined) return undefined;
  const newest = (list: Semver[]): Semver => list.filter((v) => v.major === major).sort(compare).at(-1) as Semver;
  const na = newest(a);
  const nb = newest(b);
  const chosen = compare(na, nb) <= 0 ? na : nb;
  return `${chosen.major}.${chosen.minor}.${chosen.patch}`;
}

export function sameMajor(a: string, b: string): boolean {
  const pa = parseSemver(a);
  const pb = parseSemver(b);
  return pa !== undefined && pb !== undefined && pa.major === pb.major;
}

/** Orders two versions; NaN when either is not semver. */
export function compareVersions(a: string, b: string): number {
  const pa = parseSemver(a);
  const pb = parseSemver(b);
  return pa && pb ? compare(pa, pb) : NaN;
}
