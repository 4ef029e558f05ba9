import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError, isAppError } from '../errors.js';
import { readInstanceByRange, readInstanceForFrame } from '../formats/dicom/read-frame-by-range.js';
import { detectQrs } from '../formats/ecg/qrs.js';
import { type EcgTriageSummary, type Inspection, inspectFile, loadEcgFile } from '../formats/inspect.js';
import type { ByteSource } from '../formats/types.js';
import { renderDicomFrame, type VoiWindow } from '../imaging/render-dicom.js';
import { renderFileThumbnail } from '../pipeline/render-file.js';
import { fileByteSource } from '../storage/file-byte-source.js';

/** Siblings are looked up in the file's own folder, as a WFDB header names its signal files. */
function siblingReader(file: string) {
  return async (name: string) => {
    if (name.includes('/') || name.includes('\\') || name.includes('..')) return null;
    return readFile(path.join(path.dirname(file), name)).catch(() => null);
  };
}

/** A failure is one JSON line on stdout, like a success, so scripts read every file's outcome the same way. */
function printError(file: string, err: unknown): void {
  const e = isAppError(err)
    ? err
    : new AppError('INTERNAL', err instanceof Error ? err.message : String(err));
  console.log(JSON.stringify({ file, error: { code: e.code, message: e.message } }));
}

/** Runs `work` on an opened file and closes it; returns the exit code (1 when `work` failed). */
async function onOpenFile(
  file: string,
  source: { close(): Promise<void> },
  work: () => Promise<void>,
): Promise<0 | 1> {
  try {
    await work();
    return 0;
  } catch (err) {
    printError(file, err);
    return 1;
  } finally {
    await source.close();
  }
}

function inspectOnDisk(file: string, source: ByteSource) {
  return inspectFile(source, path.basename(file), siblingReader(file));
}

async function bytesOf(file: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(file));
}

/** Vendor names as OpenSlide reports them, for people who compare with openslide-show-properties. */
const SLIDE_VENDOR: Record<string, string> = {
  'aperio-svs': 'aperio',
  'hamamatsu-ndpi': 'hamamatsu',
  'philips-tiff': 'philips',
  'ome-tiff': 'ome',
  'generic-tiff': 'generic-tiff',
};

function slideSummary(inspection: Inspection) {
  const m = inspection.metadata as {
    levels?: Array<{ width: number; height: number }>;
    mppX?: number;
    mppY?: number;
    objectivePower?: number;
    associated?: Array<{ name: string }>;
  };
  return {
    format: inspection.format,
    vendor: SLIDE_VENDOR[inspection.format] ?? inspection.format,
    levels: (m.levels ?? []).map((l) => [l.width, l.height]),
    mpp: m.mppX !== undefined ? [m.mppX, m.mppY ?? m.mppX] : null,
    objectivePower: m.objectivePower ?? null,
    associatedImages: (m.associated ?? []).map((a) => a.name),
  };
}

function ecgSummaryForCli(inspection: Inspection) {
  const m = inspection.metadata as {
    leads?: string[];
    samplingFrequency?: number;
    sampleCount?: number;
    durationSeconds?: number;
    triage?: EcgTriageSummary;
  };
  return {
    format: inspection.format,
    leads: m.leads ?? [],
    samplingFrequency: m.samplingFrequency ?? null,
    samplesPerLead: m.sampleCount ?? null,
    durationSeconds: m.durationSeconds ?? null,
    heartRate: m.triage?.heartRate ?? null,
    flags: m.triage?.flags ?? [],
    quality: m.triage?.quality ?? null,
    priority: m.triage?.priority ?? null,
  };
}

/** `teleread qrs FILE`: one detected R-peak time per line, in seconds from the record start (like WFDB gqrs). */
export async function qrsCommand(file: string): Promise<number> {
  const source = await fileByteSource(file);
  return onOpenFile(file, source, async () => {
    const inspection = await inspectOnDisk(file, source);
    if (inspection.kind !== 'ecg') throw new AppError('UNSUPPORTED_FORMAT', `${file} is not an ECG`);
    const ecg = await loadEcgFile(
      inspection.format,
      await bytesOf(file),
      path.basename(file),
      siblingReader(file),
    );
    for (const t of detectQrs(ecg).times) process.stdout.write(`${t.toFixed(3)}\n`);
  });
}

/** `teleread inspect FILE… [--json]`: one JSON object per file; exit 1 if any file is bad. */
export async function inspectCommand(files: string[], asJson: boolean): Promise<number> {
  let failed = 0;
  for (const file of files) {
    const source = await fileByteSource(file).catch((err: NodeJS.ErrnoException) => {
      throw new AppError('NOT_FOUND', `${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
    failed += await onOpenFile(file, source, async () => {
      const inspection = await inspectOnDisk(file, source);
      // DICOM: every attribute by its standard keyword. This is the user's own file on their disk, so patient
      // attributes are shown too (the pipeline keeps them out of logs and metadata columns).
      // dcmjs's dictionary (about 16 MB) is loaded only here, not by `render` and `qrs`, which share this module.
      const dicom = inspection.format.startsWith('dicom')
        ? (await import('../formats/dicom/attributes.js')).dicomAttributes(
            await readInstanceByRange(source),
            {
              includePatient: true,
            },
          )
        : undefined;
      const slide =
        inspection.kind === 'pathology' && !inspection.format.startsWith('dicom')
          ? slideSummary(inspection)
          : undefined;
      const ecg = inspection.kind === 'ecg' ? ecgSummaryForCli(inspection) : undefined;
      const out = {
        file,
        ...inspection,
        ...(dicom ? { dicom } : {}),
        ...(slide ? { slide } : {}),
        ...(ecg ? { ecg } : {}),
      };
      if (asJson) console.log(JSON.stringify(out));
      else
        console.log(
          `${file}: ${inspection.kind ?? 'companion'} / ${inspection.format}\n${JSON.stringify(inspection.metadata, null, 2)}`,
        );
    });
  }
  return failed > 0 ? 1 : 0;
}

/**
 * `teleread render FILE -o OUT [--size N]`: the thumbnail the pipeline would store for this file. Without --size,
 * at the pipeline's sizes (DICOM 256 px, ECG page 800 px, slide 512 px); with it, N for every kind.
 */
export async function renderCommand(
  file: string,
  out: string,
  sizeOption: number | undefined,
  frame?: number,
  overlays = true,
  windowOption?: string,
): Promise<number> {
  const size = sizeOption ?? 256;
  if (!Number.isInteger(size) || size < 32 || size > 8192) {
    printError(file, new AppError('VALIDATION_FAILED', '--size is a whole number of pixels from 32 to 8192'));
    return 1;
  }
  let window: VoiWindow | undefined;
  if (windowOption !== undefined) {
    const [center, width] = windowOption.split(',').map((v) => Number(v.trim()));
    if (
      windowOption.split(',').length !== 2 ||
      !Number.isFinite(center) ||
      !Number.isFinite(width) ||
      width! <= 0
    ) {
      printError(
        file,
        new AppError('VALIDATION_FAILED', '--window is CENTRE,WIDTH in modality units, width > 0'),
      );
      return 1;
    }
    window = { center: center!, width: width! };
  }
  const source = await fileByteSource(file);
  const encoding = /\.webp$/i.test(out) ? 'webp' : /\.jpe?g$/i.test(out) ? 'jpeg' : 'png';
  return onOpenFile(file, source, async () => {
    const inspection = await inspectOnDisk(file, source);
    const image =
      frame === undefined && window === undefined
        ? await renderFileThumbnail(
            inspection.format,
            {
              name: path.basename(file),
              bytes: () => bytesOf(file),
              source: () => source,
              sibling: siblingReader(file),
            },
            size,
            encoding,
            sizeOption !== undefined,
            overlays,
          )
        : await renderFrame(source, inspection.format, frame, size, encoding, overlays, window);
    await writeFile(out, image.data);
    console.log(
      JSON.stringify({
        file,
        out,
        ...(frame === undefined ? {} : { frame }),
        contentType: image.contentType,
        width: image.width,
        height: image.height,
      }),
    );
  });
}

/** One DICOM frame (1-based; the middle one when not given), with the window when given. */
async function renderFrame(
  source: ByteSource,
  format: string,
  frame: number | undefined,
  size: number,
  encoding: 'webp' | 'jpeg' | 'png',
  overlays: boolean,
  window: VoiWindow | undefined,
) {
  if (frame !== undefined && (!Number.isInteger(frame) || frame < 1)) {
    throw new AppError('VALIDATION_FAILED', '--frame is 1-based');
  }
  if (format !== 'dicom' && format !== 'dicom-wsi') {
    throw new AppError('VALIDATION_FAILED', '--frame and --window apply to DICOM images only');
  }
  const read = await readInstanceForFrame(source, frame === undefined ? undefined : frame - 1);
  return renderDicomFrame(read.instance, {
    frame: read.frame,
    ...(window ? { window } : {}),
    size,
    format: encoding,
    overlays,
  });
}
