/** A dependency-free SVG of speed-up and mean accepted length per dataset and batch size. */
import type { SpecBenchRow } from "./spec-bench.js";

const W = 360, H = 220, PAD = 40;

export function plotSpeculative(rows: SpecBenchRow[], title: string): string {
  const panels = [
    { label: "speed-up over baseline (×)", value: (r: SpecBenchRow) => r.speedup, line: 1 },
    { label: "mean accepted length (tokens/round)", value: (r: SpecBenchRow) => r.meanAcceptedLength, line: 1 },
  ];
  const groups = rows.map((r) => `${r.dataset} b${r.batch}`);
  const body = panels.map((p, i) => panel(rows.map(p.value), groups, p.label, p.line, i * (W + 20))).join("\n");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W + 20}" height="${H + 30}" font-family="sans-serif" font-size="11">
<text x="10" y="16" font-size="13">${escape(title)}</text>
<g transform="translate(0,24)">${body}</g>
</svg>
`;
}

function panel(values: number[], labels: string[], label: string, reference: number, x0: number): string {
  const max = Math.max(reference, ...values) * 1.15;
  const bw = (W - 2 * PAD) / Math.max(1, values.length);
  const y = (v: number) => H - PAD - (v / max) * (H - 2 * PAD);
  const bars = values.map((v, i) => {
    const x = x0 + PAD + i * bw + bw * 0.15;
    return `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw * 0.7).toFixed(1)}" height="${(H - PAD - y(v)).toFixed(1)}" fill="#3b6ea8"/>` +
      `<text x="${(x + bw * 0.35).toFixed(1)}" y="${(y(v) - 3).toFixed(1)}" text-anchor="middle">${v.toFixed(2)}</text>` +
      `<text x="${(x + bw * 0.35).toFixed(1)}" y="${H - PAD + 14}" text-anchor="middle">${escape(labels[i])}</text>`;
  });
  return `<g><text x="${x0 + PAD}" y="12">${escape(label)}</text>
<line x1="${x0 + PAD}" y1="${y(reference).toFixed(1)}" x2="${x0 + W - PAD}" y2="${y(reference).toFixed(1)}" stroke="#999" stroke-dasharray="4 3"/>
<line x1="${x0 + PAD}" y1="${H - PAD}" x2="${x0 + W - PAD}" y2="${H - PAD}" stroke="#333"/>
${bars.join("\n")}</g>`;
}

function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
}
