// Geometry of the small line charts: samples to an SVG path, and a scale with a round top.

/** A "nice" upper bound at or above `max` (1, 2 or 5 times a power of ten). */
export function niceMax(max: number): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/** The SVG path of `values` drawn in a `w` x `h` box with `top` at the top edge. */
export function linePath(values: number[], w: number, h: number, top: number): string {
  if (values.length === 0) return '';
  const step = values.length > 1 ? w / (values.length - 1) : 0;
  return values
    .map((v, i) => {
      const y = h - (Math.max(0, Math.min(v, top)) / top) * h;
      return `${i === 0 ? 'M' : 'L'}${(i * step).toFixed(1)},${y.toFixed(1)}`;
    })
    .join('');
}
