// A small SVG line chart with its current value, for the dashboard and the VM graphs.

import { linePath, niceMax } from './chart';

/** One line. */
export interface Series {
  label: string;
  values: number[];
  cls: string;
}

/** A chart of one or two series sharing a scale; `fmt` formats values. */
export function Chart(props: { title: string; series: Series[]; fmt: (v: number) => string; max?: number }) {
  const w = 300;
  const h = 80;
  const all = props.series.flatMap((s) => s.values);
  const top = props.max ?? niceMax(Math.max(0, ...all));
  return (
    <figure class="chart">
      <figcaption>
        <span>{props.title}</span>
        <span class="now">
          {props.series.map((s) => (
            <span class={'legend ' + s.cls}>
              {s.label} {s.values.length ? props.fmt(s.values[s.values.length - 1]) : '-'}
            </span>
          ))}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} preserveAspectRatio="none" role="img" aria-label={props.title}>
        <line x1="0" y1={h / 2} x2={w} y2={h / 2} class="grid" />
        {props.series.map((s) => (
          <path d={linePath(s.values, w, h, top)} class={'line ' + s.cls} />
        ))}
      </svg>
      <div class="scale">max {props.fmt(top)}</div>
    </figure>
  );
}
