/**
 * Turns a TIFF directory listing into a slide: which vendor wrote it, which directories form the pyramid,
 * which are the label / macro / thumbnail pictures, and the physical pixel size.
 *
 * The vendor rules follow OpenSlide's (aperio, hamamatsu, philips, generic-tiff) so that levels and MPP
 * agree with what pathologists' other tools show; OME-TIFF, which OpenSlide 3.4 cannot open, follows the
 * OME-TIFF specification (pyramid levels in SubIFDs). Pure: no I/O beyond what `readTiff` already did.
 */
import { AppError } from '../../errors.js';
import type { TiffFile, TiffIfd } from './tiff.js';

export type SlideFormat =
  | 'aperio-svs'
  | 'hamamatsu-ndpi'
  | 'ome-tiff'
  | 'philips-tiff'
  | 'generic-tiff'
  | 'dicom-wsi';

export type AssociatedImageName = 'label' | 'macro' | 'thumbnail';

/** Where an image lives: `ifd` is the page index as libvips/sharp count pages (main IFD chain); `subifd`
 * picks an entry of that page's SubIFDs (OME-TIFF pyramids). For DICOM WSI, `ifd` is the index of the
 * instance in the list given to `describeDicomWsi`, which `sopInstanceUid` also names. */
export interface SlideImageRef {
  ifd: number;
  subifd?: number | undefined;
  sopInstanceUid?: string | undefined;
  /** DICOM WSI: the instance's transfer syntax (`compressionCode` is 0 there). */
  transferSyntaxUid?: string | undefined;
  width: number;
  height: number;
  tileWidth?: number | undefined;
  tileHeight?: number | undefined;
  compression: string;
  /** TIFF Compression tag value, for decoders that key on the number (33003 vs 33005 …). */
  compressionCode: number;
  samplesPerPixel: number;
  bitsPerSample: number;
}

export interface SlideLevel extends SlideImageRef {
  /** level0.width / width (Philips: from the pixel spacing of each level, as OpenSlide does). */
  downsample: number;
}

export interface SlideAssociatedImage extends SlideImageRef {
  name: AssociatedImageName;
}

export interface SlideInfo {
  format: SlideFormat;
  /** Largest first. */
  levels: SlideLevel[];
  /** Micrometres per level-0 pixel. */
  mppX?: number | undefined;
  mppY?: number | undefined;
  objectivePower?: number | undefined;
  /** ISO 8601, local time of the scanner unless the file states a zone. */
  scanDate?: string | undefined;
  associated: SlideAssociatedImage[];
  /** Vendor metadata as `vendor.Key` → value (OpenSlide property names where they exist). Bounded in size. */
  properties: Record<string, string>;
}

/** Properties are stored with the file row; a hostile description must not blow that up. */
const MAX_PROPERTIES = 512;
const MAX_PROPERTY_LENGTH = 2048;
/** Resolution tags often hold a scanner-independent default (72 dpi = 352.8 µm/px). Beyond this the value
 * is not a microscope's and is left out rather than shown as a physical scale. */
const MAX_PLAUSIBLE_MPP = 30;

interface Located {
  ifd: TiffIfd;
  page: number;
  subifd?: number | undefined;
}

function ref(loc: Located): SlideImageRef {
  const { ifd } = loc;
  return {
    ifd: loc.page,
    ...(loc.subifd === undefined ? {} : { subifd: loc.subifd }),
    width: ifd.width,
    height: ifd.height,
    ...(ifd.tileWidth === undefined ? {} : { tileWidth: ifd.tileWidth, tileHeight: ifd.tileHeight }),
    compression: ifd.compressionName,
    compressionCode: ifd.compression,
    samplesPerPixel: ifd.samplesPerPixel,
    bitsPerSample: ifd.bitsPerSample,
  };
}

function toLevels(located: Located[], downsamples?: number[]): SlideLevel[] {
  const sorted = [...located].sort((a, b) => b.ifd.width - a.ifd.width || b.ifd.height - a.ifd.height);
  const base = sorted[0];
  if (!base) return [];
  return sorted.map((loc, i) => ({
    ...ref(loc),
    downsample: downsamples?.[i] ?? base.ifd.width / loc.ifd.width,
  }));
}

function associated(name: AssociatedImageName, loc: Located): SlideAssociatedImage {
  return { name, ...ref(loc) };
}

function isTiled(ifd: TiffIfd): boolean {
  return ifd.tileWidth !== undefined;
}

/** Same picture at a smaller scale: the height follows the width ratio, give or take the rounding each
 * halving adds. */
function sameAspect(base: TiffIfd, other: TiffIfd): boolean {
  const expected = (base.height * other.width) / base.width;
  return Math.abs(other.height - expected) <= 1.5 + expected * 0.01;
}

class PropertyBag {
  readonly values: Record<string, string> = {};
  private count = 0;

  set(key: string, value: string | number | undefined): void {
    if (value === undefined || value === '') return;
    if (!(key in this.values)) {
      if (this.count >= MAX_PROPERTIES) return;
      this.count++;
    }
    this.values[key] = String(value).slice(0, MAX_PROPERTY_LENGTH);
  }
}

function addTiffProperties(props: PropertyBag, ifd: TiffIfd): void {
  props.set('tiff.Make', ifd.make);
  props.set('tiff.Model', ifd.model);
  props.set('tiff.Software', ifd.software);
  props.set('tiff.DateTime', ifd.dateTime);
  props.set('tiff.XResolution', ifd.xResolution);
  props.set('tiff.YResolution', ifd.yResolution);
  props.set(
    'tiff.ResolutionUnit',
    ({ 1: 'none', 2: 'inch', 3: 'centimeter' } as Record<number, string>)[ifd.resolutionUnit],
  );
}

function parseNumber(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  // Aperio writes MPP with the scanner's locale: "0,4990" on decimal-comma systems.
  const value = Number.parseFloat(text.trim().replace(',', '.'));
  return Number.isFinite(value) ? value : undefined;
}

function positive(value: number | undefined): number | undefined {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : undefined;
}

/** MPP from resolution tags, only when they are per centimetre (OpenSlide's rule) and plausible. */
function mppFromResolution(ifd: TiffIfd): { mppX?: number; mppY?: number } {
  if (ifd.resolutionUnit !== 3) return {};
  const x = positive(ifd.xResolution);
  const y = positive(ifd.yResolution);
  const mppX = x === undefined ? undefined : 10000 / x;
  const mppY = y === undefined ? undefined : 10000 / y;
  if (mppX === undefined || mppX > MAX_PLAUSIBLE_MPP) return {};
  return { mppX, mppY: mppY !== undefined && mppY <= MAX_PLAUSIBLE_MPP ? mppY : mppX };
}

/** "YYYY:MM:DD HH:MM:SS" → ISO 8601. */
function tiffDateToIso(value: string | undefined): string | undefined {
  const m = value?.match(/^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})/);
  return m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}` : undefined;
}

function mainChain(tiff: TiffFile): Located[] {
  return tiff.ifds.map((ifd, page) => ({ ifd, page }));
}

// ---------------------------------------------------------------------------------------------- Aperio

function describeAperio(tiff: TiffFile): SlideInfo {
  const first = tiff.ifds[0]!;
  const props = new PropertyBag();
  const description = first.imageDescription ?? '';
  const [header = '', ...pairs] = description.split('|');
  props.set('aperio.Header', header.split(/\r?\n/)[0]?.trim());
  const kv: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    kv[key] = value;
    props.set(`aperio.${key}`, value);
  }
  addTiffProperties(props, first);

  const levels: Located[] = [];
  const extras: SlideAssociatedImage[] = [];
  for (const loc of mainChain(tiff)) {
    if (isTiled(loc.ifd)) {
      levels.push(loc);
      continue;
    }
    // OpenSlide: the stripped directory right after level 0 is the thumbnail; the others say what they are
    // in the second line of their description ("label 387x463", "macro 1280x431").
    if (loc.page === 1) {
      extras.push(associated('thumbnail', loc));
      continue;
    }
    const secondLine = (loc.ifd.imageDescription ?? '').split(/\r?\n/)[1]?.trim().toLowerCase() ?? '';
    const name = secondLine.split(/\s+/)[0];
    if (name === 'label' || name === 'macro') extras.push(associated(name, loc));
  }
  if (levels.length === 0) levels.push({ ifd: first, page: 0 });
  const mpp = positive(parseNumber(kv.MPP));
  return {
    format: 'aperio-svs',
    levels: toLevels(levels),
    mppX: mpp,
    mppY: mpp,
    objectivePower: positive(parseNumber(kv.AppMag)),
    scanDate: aperioDate(kv.Date, kv.Time, kv['Time Zone']),
    associated: extras,
    properties: props.values,
  };
}

/** Aperio: Date = MM/DD/YY, Time = HH:MM:SS, Time Zone = GMT-0500 (optional). */
function aperioDate(
  date: string | undefined,
  time: string | undefined,
  zone: string | undefined,
): string | undefined {
  const d = date?.match(/^(\d{1,2})\/(\d{1,2})\/(\d{2}|\d{4})$/);
  if (!d) return undefined;
  const year = d[3]!.length === 2 ? `20${d[3]}` : d[3]!;
  let iso = `${year}-${d[1]!.padStart(2, '0')}-${d[2]!.padStart(2, '0')}`;
  const t = time?.match(/^(\d{1,2}):(\d{2}):(\d{2})/);
  if (t) {
    iso += `T${t[1]!.padStart(2, '0')}:${t[2]}:${t[3]}`;
    const z = zone?.match(/GMT\s*([+-])(\d{1,2}):?(\d{2})/i);
    if (z) iso += `${z[1]}${z[2]!.padStart(2, '0')}:${z[3]}`;
  }
  return iso;
}

// ---------------------------------------------------------------------------------------------- Hamamatsu

function describeNdpi(tiff: TiffFile): SlideInfo {
  const levels: Located[] = [];
  const extras: SlideAssociatedImage[] = [];
  for (const loc of mainChain(tiff)) {
    const lens = loc.ifd.ndpiTags?.sourceLens;
    if (lens === undefined) continue;
    // OpenSlide: positive lens = a pyramid level (other focal planes are skipped), -1 = macro, -2 = the map
    // of scanned regions, which is not a picture anyone reads.
    if (lens > 0 && (loc.ifd.ndpiTags?.focalPlane ?? 0) === 0) levels.push(loc);
    else if (lens === -1) extras.push(associated('macro', loc));
  }
  const first = tiff.ifds[0]!;
  const props = new PropertyBag();
  const tags = first.ndpiTags;
  props.set('hamamatsu.SourceLens', tags?.sourceLens);
  props.set('hamamatsu.XOffsetFromSlideCentre', tags?.xOffsetNm);
  props.set('hamamatsu.YOffsetFromSlideCentre', tags?.yOffsetNm);
  props.set('hamamatsu.Reference', tags?.reference);
  for (const line of (tags?.propertyMap ?? '').split(/\r?\n/)) {
    const eq = line.indexOf('=');
    if (eq > 0 && eq < line.length - 1) props.set(`hamamatsu.${line.slice(0, eq)}`, line.slice(eq + 1));
  }
  addTiffProperties(props, first);
  return {
    format: 'hamamatsu-ndpi',
    levels: toLevels(levels),
    ...mppFromResolution(first),
    objectivePower: positive(tags?.sourceLens),
    scanDate: tiffDateToIso(first.dateTime),
    associated: extras,
    properties: props.values,
  };
}

// ---------------------------------------------------------------------------------------------- Philips

/** Leaf `<Attribute Name="X" …>value</Attribute>` elements, in document order. */
function philipsAttributes(xml: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const m of xml.matchAll(/<Attribute\b[^>]*\bName="([^"]+)"[^>]*>([^<]*)<\/Attribute>/g)) {
    out.push([m[1]!, m[2]!.trim()]);
  }
  return out;
}

/** `"0.000227" "0.000227"`: row spacing then column spacing, in millimetres. */
function philipsSpacing(value: string | undefined): { x: number; y: number } | undefined {
  const parts = value?.replace(/"/g, ' ').trim().split(/\s+/);
  if (parts?.length !== 2) return undefined;
  const y = positive(parseNumber(parts[0]));
  const x = positive(parseNumber(parts[1]));
  return x !== undefined && y !== undefined ? { x, y } : undefined;
}

function describePhilips(tiff: TiffFile): SlideInfo {
  const first = tiff.ifds[0]!;
  const xml = first.imageDescription ?? '';
  const levels: Located[] = [];
  const extras: SlideAssociatedImage[] = [];
  for (const loc of mainChain(tiff)) {
    const description = loc.ifd.imageDescription ?? '';
    if (isTiled(loc.ifd)) levels.push(loc);
    else if (description.startsWith('Label')) extras.push(associated('label', loc));
    else if (description.startsWith('Macro')) extras.push(associated('macro', loc));
  }
  // The XML lists scanned images (WSI, LABELIMAGE, MACROIMAGE) in any order; only the WSI one describes
  // the pyramid. Its per-level spacings sit in PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE, the slide's own
  // spacing is the DICOM_PIXEL_SPACING outside it. Philips pads level sizes up to whole tiles, so OpenSlide
  // takes the downsamples from these spacings rather than from the widths.
  const [topLevel = '', ...scanned] = xml.split(/<DataObject\b[^>]*ObjectType="DPScannedImage"[^>]*>/);
  const wsi = scanned.find((chunk) => /Name="PIM_DP_IMAGE_TYPE"[^>]*>\s*WSI\s*</.test(chunk)) ?? '';
  const sequence = wsi.match(
    /Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE"[^>]*>\s*<Array>([\s\S]*?)<\/Array>/,
  );
  const levelSpacings = [...(sequence?.[1] ?? '').matchAll(/Name="DICOM_PIXEL_SPACING"[^>]*>([^<]*)</g)].map(
    (m) => philipsSpacing(m[1]),
  );
  const props = new PropertyBag();
  const wsiOwn = sequence ? wsi.replace(sequence[1]!, '') : wsi;
  for (const [name, value] of [...philipsAttributes(topLevel), ...philipsAttributes(wsiOwn)]) {
    // The embedded label/macro JPEGs are megabytes of base64, and the barcode identifies the patient's case.
    if (name === 'PIM_DP_IMAGE_DATA' || name === 'PIM_DP_UFS_BARCODE') continue;
    if (!(`philips.${name}` in props.values)) props.set(`philips.${name}`, value);
  }
  addTiffProperties(props, first);
  const spacing = philipsSpacing(props.values['philips.DICOM_PIXEL_SPACING']) ?? levelSpacings[0];
  let downsamples: number[] | undefined;
  const base = levelSpacings[0];
  if (base && levelSpacings.length === levels.length && levelSpacings.every((s) => s !== undefined)) {
    downsamples = levelSpacings.map((s) => Math.round((s!.x / base.x + s!.y / base.y) / 2));
  }
  const acquired = props.values['philips.DICOM_ACQUISITION_DATETIME']?.match(
    /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})/,
  );
  return {
    format: 'philips-tiff',
    levels: toLevels(levels, downsamples),
    mppX: spacing ? spacing.x * 1000 : undefined,
    mppY: spacing ? spacing.y * 1000 : undefined,
    scanDate: acquired
      ? `${acquired[1]}-${acquired[2]}-${acquired[3]}T${acquired[4]}:${acquired[5]}:${acquired[6]}`
      : undefined,
    associated: extras,
    properties: props.values,
  };
}

// ---------------------------------------------------------------------------------------------- OME-TIFF

interface OmeImage {
  name: string;
  ifd: number;
  attrs: Record<string, string>;
  acquisitionDate?: string | undefined;
}

function xmlAttributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([A-Za-z_:][\w:.-]*)\s*=\s*"([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

function omeImages(xml: string): OmeImage[] {
  const images: OmeImage[] = [];
  let nextIfd = 0;
  for (const m of xml.matchAll(/<(?:\w+:)?Image\b([^>]*)>([\s\S]*?)<\/(?:\w+:)?Image>/g)) {
    const body = m[2]!;
    const pixelsTag = body.match(/<(?:\w+:)?Pixels\b([^>]*)>/);
    const attrs = xmlAttributes(pixelsTag?.[1] ?? '');
    const tiffData = body.match(/<(?:\w+:)?TiffData\b([^>]*)\/?>/);
    const declared = tiffData ? Number.parseInt(xmlAttributes(tiffData[1]!).IFD ?? '', 10) : Number.NaN;
    const ifd = Number.isInteger(declared) && declared >= 0 ? declared : nextIfd;
    // Without an IFD attribute, images follow each other: one directory per Z×C×T plane, where an
    // interleaved RGB channel counts as one plane.
    const channels = (body.match(/<(?:\w+:)?Channel\b/g) ?? []).length || Number(attrs.SizeC ?? 1) || 1;
    const planes = (Number(attrs.SizeZ ?? 1) || 1) * (Number(attrs.SizeT ?? 1) || 1) * channels;
    nextIfd = ifd + planes;
    images.push({
      name: xmlAttributes(m[1]!).Name ?? '',
      ifd,
      attrs,
      acquisitionDate: body.match(/<(?:\w+:)?AcquisitionDate>([^<]+)</)?.[1]?.trim(),
    });
  }
  return images;
}

const UM_PER_UNIT: Readonly<Record<string, number>> = {
  µm: 1,
  μm: 1,
  um: 1,
  nm: 1e-3,
  mm: 1e3,
  cm: 1e4,
  m: 1e6,
  Å: 1e-4,
};

function omePhysicalSize(value: string | undefined, unit: string | undefined): number | undefined {
  const size = positive(parseNumber(value));
  const factor = UM_PER_UNIT[unit ?? 'µm'];
  return size === undefined || factor === undefined ? undefined : size * factor;
}

function associatedNameFor(imageName: string): AssociatedImageName | undefined {
  if (/label|barcode/i.test(imageName)) return 'label';
  if (/macro|overview/i.test(imageName)) return 'macro';
  if (/thumbnail/i.test(imageName)) return 'thumbnail';
  return undefined;
}

function withSubIfds(tiff: TiffFile, page: number): Located[] {
  const ifd = tiff.ifds[page];
  if (!ifd) return [];
  return [{ ifd, page }, ...ifd.subIfds.map((sub, subifd) => ({ ifd: sub, page, subifd }))];
}

function describeOme(tiff: TiffFile): SlideInfo {
  const xml = tiff.ifds[0]!.imageDescription ?? '';
  const images = omeImages(xml).filter((image) => image.ifd < tiff.ifds.length);
  const main = images.find((image) => associatedNameFor(image.name) === undefined);
  const page = main?.ifd ?? 0;
  const base = tiff.ifds[page]!;
  const levels = withSubIfds(tiff, page).filter(
    (loc) => loc.subifd === undefined || sameAspect(base, loc.ifd),
  );
  const extras: SlideAssociatedImage[] = [];
  for (const image of images) {
    const name = associatedNameFor(image.name);
    const ifd = tiff.ifds[image.ifd];
    if (name && ifd && !extras.some((e) => e.name === name))
      extras.push(associated(name, { ifd, page: image.ifd }));
  }
  const props = new PropertyBag();
  props.set('ome.Creator', xml.match(/<(?:\w+:)?OME\b[^>]*\bCreator="([^"]*)"/)?.[1]);
  props.set('ome.ImageCount', images.length || undefined);
  if (main) {
    props.set('ome.Image.Name', main.name);
    for (const key of ['SizeX', 'SizeY', 'SizeZ', 'SizeC', 'SizeT', 'Type', 'DimensionOrder']) {
      props.set(`ome.Pixels.${key}`, main.attrs[key]);
    }
  }
  addTiffProperties(props, tiff.ifds[0]!);
  const magnification = positive(parseNumber(xml.match(/\bNominalMagnification="([^"]*)"/)?.[1]));
  const mppX = omePhysicalSize(main?.attrs.PhysicalSizeX, main?.attrs.PhysicalSizeXUnit);
  const mppY = omePhysicalSize(main?.attrs.PhysicalSizeY, main?.attrs.PhysicalSizeYUnit);
  return {
    format: 'ome-tiff',
    levels: toLevels(levels),
    mppX,
    mppY: mppY ?? mppX,
    objectivePower: magnification,
    scanDate: main?.acquisitionDate,
    associated: extras,
    properties: props.values,
  };
}

// ---------------------------------------------------------------------------------------------- generic

function describeGeneric(tiff: TiffFile): SlideInfo {
  const images = mainChain(tiff).filter((loc) => (loc.ifd.newSubfileType & 4) === 0); // not transparency masks
  // OpenSlide's generic-tiff takes the tiled directories as levels. A stripped image is still a slide to
  // show when nothing is tiled. Level 0 is the largest image, not necessarily page 0: Ventana BIF and
  // Leica SCN put the label or overview first.
  const tiled = images.filter((loc) => isTiled(loc.ifd));
  const pool = tiled.length > 0 ? tiled : images;
  const base = pool.reduce<Located | undefined>(
    (best, loc) => (!best || loc.ifd.width * loc.ifd.height > best.ifd.width * best.ifd.height ? loc : best),
    undefined,
  ) ?? { ifd: tiff.ifds[0]!, page: 0 };
  const levels: Located[] = [base];
  for (const loc of [...pool, ...withSubIfds(tiff, base.page).slice(1)]) {
    const { ifd } = loc;
    if (ifd.width >= base.ifd.width || !sameAspect(base.ifd, ifd)) continue;
    if (levels.some((l) => l.ifd.width === ifd.width)) continue;
    levels.push(loc);
  }
  const extras: SlideAssociatedImage[] = [];
  for (const loc of images) {
    if (levels.includes(loc)) continue;
    const description = loc.ifd.imageDescription ?? '';
    let name = description.length <= 256 ? associatedNameFor(description) : undefined;
    // A "thumbnail" that is not the scanned area's shape is an overview of the glass slide (Ventana BIF);
    // rendering it as the slide's thumbnail would show the wrong picture.
    if (name === 'thumbnail' && !sameAspect(base.ifd, loc.ifd)) name = 'macro';
    if (name && !extras.some((e) => e.name === name)) extras.push(associated(name, loc));
  }
  const first = base.ifd;
  const props = new PropertyBag();
  if ((first.imageDescription?.length ?? 0) <= MAX_PROPERTY_LENGTH) {
    props.set('tiff.ImageDescription', first.imageDescription);
  }
  addTiffProperties(props, first);
  return {
    format: 'generic-tiff',
    levels: toLevels(levels),
    ...mppFromResolution(first),
    scanDate: tiffDateToIso(first.dateTime),
    associated: extras,
    properties: props.values,
  };
}

// ---------------------------------------------------------------------------------------------- entry

export function detectSlideFormat(tiff: TiffFile): SlideFormat {
  const first = tiff.ifds[0];
  if (!first) return 'generic-tiff';
  const description = first.imageDescription ?? '';
  if (first.ndpiTags) return 'hamamatsu-ndpi';
  if (description.startsWith('Aperio')) return 'aperio-svs';
  if (
    first.software?.startsWith('Philips') &&
    /<DataObject\b[^>]*ObjectType="DPUfsImport"/.test(description)
  ) {
    return 'philips-tiff';
  }
  if (/<(?:\w+:)?OME[\s>]/.test(description)) return 'ome-tiff';
  return 'generic-tiff';
}

/**
 * Describes a slide from its TIFF structure. Throws CORRUPT_FILE when the TIFF holds no image a viewer
 * could show as the slide (for instance an NDPI without any pyramid directory).
 */
export function describeSlide(tiff: TiffFile): SlideInfo {
  if (tiff.ifds.length === 0) {
    throw new AppError('CORRUPT_FILE', 'TIFF has no image directory', { retryable: false });
  }
  const format = detectSlideFormat(tiff);
  const info =
    format === 'aperio-svs'
      ? describeAperio(tiff)
      : format === 'hamamatsu-ndpi'
        ? describeNdpi(tiff)
        : format === 'philips-tiff'
          ? describePhilips(tiff)
          : format === 'ome-tiff'
            ? describeOme(tiff)
            : describeGeneric(tiff);
  if (info.levels.length === 0) {
    throw new AppError('CORRUPT_FILE', `${format} file has no pyramid level`, {
      retryable: false,
      details: { format, ifdCount: tiff.ifds.length },
    });
  }
  return info;
}
