// Numbers as people read them. Every formatter says "–" for a missing value (null: no data yet).

const DASH = "–";

export function ms(x) {
  if (x === null || x === undefined) return DASH;
  if (Math.abs(x) >= 10000) return (x / 1000).toFixed(1) + " s";
  if (Math.abs(x) >= 10) return Math.round(x).toLocaleString("en-US") + " ms";
  return x.toFixed(1) + " ms";
}

export function usd(x) {
  if (x === null || x === undefined) return DASH;
  if (x === 0) return "$0";
  if (Math.abs(x) >= 1) return "$" + x.toFixed(2);
  return "$" + x.toLocaleString("en-US", { maximumSignificantDigits: 3 });
}

export function pct(x) {
  if (x === null || x === undefined) return DASH;
  return Math.round(x * 100) + "%";
}

export function times(x) {
  if (x === null || x === undefined) return DASH;
  return x.toFixed(2) + "×";
}

export function count(x) {
  if (x === null || x === undefined) return DASH;
  return x.toLocaleString("en-US");
}
