// Numbers for people: sizes, rates, times.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1536` -> `1.5 KiB`. */
export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '-';
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${UNITS[i]}`;
}

/** A size in MiB, as people say it: `2048` -> `2 GiB`. */
export function mib(n: number): string {
  return bytes(n * 1024 * 1024);
}

/** A rate in bytes per second. */
export function rate(n: number): string {
  return bytes(n) + '/s';
}

/** How long ago Unix time `t` was, seen at `now` (both seconds). */
export function ago(t: number, now: number = Date.now() / 1000): string {
  const d = Math.max(0, Math.round(now - t));
  if (d < 60) return `${d} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return `${Math.floor(d / 86400)} d ago`;
}

/** A percentage with one decimal. */
export function percent(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(1)} %` : '-';
}
