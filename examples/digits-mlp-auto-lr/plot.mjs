// The range test's curve (metrics.lr_finder) as a small SVG: smoothed loss against log10(lr).

/** The range test's smoothed loss against log10(lr), with the suggestion marked: a small SVG. */
export function lrFinderSvg({ lrs, losses, lr, method }) {
  const [W, H, L, B] = [560, 320, 56, 40];
  const lx = lrs.map(Math.log10);
  const [x0, x1] = [Math.floor(Math.min(...lx)), Math.ceil(Math.max(...lx))];
  const [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  const px = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - 16);
  const py = (v) => 16 + (1 - (v - y0) / (y1 - y0 || 1)) * (H - B - 16);
  const line = lx.map((v, i) => `${px(v).toFixed(1)},${py(losses[i]).toFixed(1)}`).join(" ");
  const at = lrs.reduce((best, v, i) => (Math.abs(Math.log(v / lr)) < Math.abs(Math.log(lrs[best] / lr)) ? i : best), 0);
  const ticks = Array.from({ length: x1 - x0 + 1 }, (_, k) => x0 + k)
    .map((e) => `<line x1="${px(e)}" y1="${H - B}" x2="${px(e)}" y2="${H - B + 4}" stroke="#333"/><text x="${px(e)}" y="${H - B + 18}" font-size="11" text-anchor="middle">1e${e}</text>`)
    .join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<line x1="${L}" y1="${H - B}" x2="${W - 16}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="16" x2="${L}" y2="${H - B}" stroke="#333"/>${ticks}
<text x="${L - 6}" y="${py(y1) + 4}" font-size="11" text-anchor="end">${y1.toFixed(2)}</text><text x="${L - 6}" y="${py(y0) + 4}" font-size="11" text-anchor="end">${y0.toFixed(2)}</text>
<text x="${(L + W) / 2}" y="${H - 6}" font-size="12" text-anchor="middle">learning rate (log scale)</text>
<text x="14" y="${(H - B) / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${(H - B) / 2})">smoothed loss</text>
<polyline points="${line}" fill="none" stroke="#1f77b4" stroke-width="2"/>
<circle cx="${px(lx[at])}" cy="${py(losses[at])}" r="5" fill="#d62728"/>
<text x="${px(lx[at]) + 8}" y="${py(losses[at]) - 8}" font-size="12" fill="#d62728">${method}: ${lr.toPrecision(3)}</text>
</svg>
`;
}
