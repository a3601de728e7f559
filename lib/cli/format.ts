/** Number formatting shared by the CLI's reports. */

/** 1234567 → "1.23 M" (decimal units). */
export function count(n: number): string {
  const units: Array<[number, string]> = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, u] of units) if (n >= v) return `${(n / v).toFixed(2)} ${u}`;
  return `${n} `;
}
