/**
 * The ECG page (ecg-page.ts) as SVG: vector output for the viewer. Units inside are millimetres (viewBox);
 * the width/height attributes are pixels. Pure: returns text (src/imaging/render-ecg.ts makes the thumbnail).
 */
import type { Ecg } from './ecg.js';
import { COLORS, type EcgPage, type EcgPageOptions, layoutEcgPage, type PageText } from './ecg-page.js';

export type { EcgPageOptions as EcgSvgOptions, PageTriage } from './ecg-page.js';
export { DEFAULT_SVG_WIDTH, layoutEcgPage, RHYTHM_LEAD, TWELVE_LEAD_LAYOUT } from './ecg-page.js';

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Coordinates in mm with 0.01 mm precision: far below a pixel at any page width we render. */
function n(value: number): string {
  return (Math.round(value * 100) / 100).toString();
}

function polyline(points: Float32Array): string {
  const parts: string[] = [];
  let penDown = false;
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = points[i]!;
    if (Number.isNaN(x)) {
      penDown = false;
      continue;
    }
    parts.push(`${penDown ? 'L' : 'M'}${n(x)} ${n(points[i + 1]!)}`);
    penDown = true;
  }
  return parts.join('');
}

function gridPaths(page: EcgPage): string {
  const { x: x0, y: y0, width, height } = page.grid;
  const minor: string[] = [];
  const major: string[] = [];
  for (let i = 0; i <= Math.round(width); i++) {
    (i % 5 === 0 ? major : minor).push(`M${n(x0 + i)} ${n(y0)}V${n(y0 + height)}`);
  }
  for (let j = 0; j <= Math.round(height); j++) {
    (j % 5 === 0 ? major : minor).push(`M${n(x0)} ${n(y0 + j)}H${n(x0 + width)}`);
  }
  return (
    `<path class="grid-minor" d="${minor.join('')}" stroke="${COLORS.gridMinor}" stroke-width="0.1" fill="none"/>` +
    `<path class="grid-major" d="${major.join('')}" stroke="${COLORS.gridMajor}" stroke-width="0.2" fill="none"/>`
  );
}

function textElement(t: PageText): string {
  const anchor = t.anchor === 'end' ? ' text-anchor="end"' : '';
  const weight = t.bold ? ' font-weight="bold"' : '';
  const fill = t.color !== COLORS.text ? ` fill="${t.color}"` : '';
  return `<text data-role="${t.role}" x="${n(t.x)}" y="${n(t.y)}" font-size="${t.size}"${anchor}${weight}${fill}>${escapeXml(t.text)}</text>`;
}

function svgOpen(page: EcgPage): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${page.widthPx}" height="${page.heightPx}" viewBox="0 0 ${page.widthMm} ${n(page.heightMm)}">`;
}

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

/** The whole page as SVG. */
export function ecgPageSvg(page: EcgPage): string {
  const out: string[] = [svgOpen(page)];
  out.push(`<rect width="${page.widthMm}" height="${n(page.heightMm)}" fill="#fff"/>`);
  out.push(gridPaths(page));
  out.push(
    `<path class="calibration" d="${page.calibration.map(polyline).join('')}" fill="none" stroke="${COLORS.trace}" stroke-width="0.3"/>`,
  );
  out.push(
    `<g fill="none" stroke="${COLORS.trace}" stroke-width="0.3" stroke-linejoin="round" stroke-linecap="round">`,
  );
  for (const trace of page.traces) {
    out.push(
      `<path data-role="${trace.role}" data-lead="${escapeXml(trace.lead)}" d="${polyline(trace.points) || 'M0 0'}"/>`,
    );
  }
  if (page.separators.length > 0) {
    out.push(
      `<path class="separators" d="${page.separators.map(([x, a, b]) => `M${n(x)} ${n(a)}V${n(b)}`).join('')}"/>`,
    );
  }
  out.push('</g>');
  out.push(`<g font-family="${FONT}" fill="${COLORS.text}" stroke="none">`);
  for (const t of page.texts) out.push(textElement(t));
  out.push('</g></svg>');
  return out.join('\n');
}

/** Lays out and writes the ECG page as SVG. */
export function renderEcgSvg(ecg: Ecg, options: EcgPageOptions = {}): string {
  return ecgPageSvg(layoutEcgPage(ecg, options));
}
