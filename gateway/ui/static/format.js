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

/** Money the gateway sent as exact decimal text (see api.js getExactJSON): printed digit for digit. */
export function money(text) {
  if (text === null || text === undefined) return DASH;
  return "$" + text;
}

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/** The exact sum of decimal strings (nulls skipped), written like the gateway writes money: no exponent,
 * no trailing zeros ("0.0003792", "0"). BigInt on a common scale: 0.1 + 0.2 is 0.3 here. */
export function sumExact(values) {
  const parsed = values.filter((v) => v !== null && v !== undefined).map((v) => {
    const m = DECIMAL.exec(String(v));
    if (!m) throw new Error(`not a decimal: ${v}`);
    return { negative: m[1] === "-", int: m[2], frac: m[3] || "" };
  });
  const scale = Math.max(0, ...parsed.map((p) => p.frac.length));
  let total = 0n;
  for (const p of parsed) {
    const n = BigInt(p.int + p.frac.padEnd(scale, "0"));
    total += p.negative ? -n : n;
  }
  const negative = total < 0n;
  const digits = (negative ? -total : total).toString().padStart(scale + 1, "0");
  const int = digits.slice(0, digits.length - scale);
  const frac = digits.slice(digits.length - scale).replace(/0+$/, "");
  return (negative ? "-" : "") + int + (frac ? "." + frac : "");
}
