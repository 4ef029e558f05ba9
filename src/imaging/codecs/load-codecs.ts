/**
 * The maintained WebAssembly and JavaScript codecs, each loaded once per thread on first use: OpenJPEG (JPEG
 * 2000), OpenJPH (HTJ2K), CharLS (JPEG-LS), DCMTK's IJG build in dcmjs-codecs (12-bit JPEG) and
 * jpeg-lossless-decoder-js (JPEG lossless). None ships TypeScript types, so the parts used are typed here.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export interface CodecFrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
  isUsingColorTransform?: boolean;
}

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): CodecFrameInfo;
  delete(): void;
}

export interface J2kDecoder extends WasmDecoder {
  decodeSubResolution(level: number, layer: number): void;
  calculateSizeAtDecompositionLevel(level: number): { width: number; height: number };
}

export interface HtJ2kDecoder extends WasmDecoder {
  readHeader(): void;
  getNumDecompositions(): number;
  decodeSubResolution(level: number): void;
  calculateSizeAtDecompositionLevel(level: number): { width: number; height: number };
}

export interface JpegLsDecoder extends WasmDecoder {
  getInterleaveMode(): number;
}

/** A loaded codec: a decoder factory plus what the codec printed since `messages` was last cleared. */
export interface LoadedCodec<D> {
  createDecoder(): D;
  /** Emscripten sends the library's own messages (OpenJPEG's [INFO] and [ERROR] lines) here instead of
   * stdout, which belongs to the process's JSON logs. Cleared before each decode; quoted in errors. */
  messages: string[];
}

type EmscriptenFactory = (options: {
  print(text: string): void;
  printErr(text: string): void;
}) => Promise<Record<string, new () => unknown>>;

const MAX_MESSAGES = 50;

function loadWasm<D>(specifier: string, className: string): () => Promise<LoadedCodec<D>> {
  let loading: Promise<LoadedCodec<D>> | undefined;
  return () => {
    loading ??= (async () => {
      const messages: string[] = [];
      const keep = (text: string) => {
        if (messages.length < MAX_MESSAGES) messages.push(text);
      };
      const factory = require(specifier) as EmscriptenFactory;
      const module = await factory({ print: keep, printErr: keep });
      const DecoderClass = module[className];
      if (typeof DecoderClass !== 'function') throw new Error(`${specifier} has no ${className}`);
      return { createDecoder: () => new DecoderClass() as D, messages };
    })();
    // A failed load (a missing .wasm file) is retried on the next frame rather than cached forever.
    loading.catch(() => {
      loading = undefined;
    });
    return loading;
  };
}

export const loadOpenJpeg = loadWasm<J2kDecoder>('@cornerstonejs/codec-openjpeg/decodewasmjs', 'J2KDecoder');
export const loadOpenJph = loadWasm<HtJ2kDecoder>('@cornerstonejs/codec-openjph/wasmjs', 'HTJ2KDecoder');
export const loadCharls = loadWasm<JpegLsDecoder>(
  '@cornerstonejs/codec-charls/decodewasmjs',
  'JpegLSDecoder',
);

export interface IjgContext {
  getDecodedBuffer(): Uint8Array | undefined;
  getWidth(): number | undefined;
  getHeight(): number | undefined;
}

export interface DcmjsCodecs {
  Context: new (attrs: {
    width: number;
    height: number;
    bitsAllocated: number;
    bitsStored: number;
    samplesPerPixel: number;
    pixelRepresentation: number;
    planarConfiguration: number;
    photometricInterpretation: string;
    encodedBuffer: Uint8Array;
  }) => IjgContext;
  NativeCodecs: {
    initializeAsync(options: { logCodecsInfo: boolean; logCodecsTrace: boolean }): Promise<void>;
    decodeJpeg(context: IjgContext, parameters: { convertColorspaceToRgb: boolean }): IjgContext;
  };
}

let dcmjsCodecs: Promise<DcmjsCodecs> | undefined;

/** dcmjs-codecs: DCMTK's IJG libraries (8, 12 and 16 bit) compiled to WebAssembly. Used for the 12-bit DCT
 * JPEG of JPEG Extended, which neither sharp's libjpeg-turbo nor the Cornerstone 8-bit build decodes. */
export function loadDcmjsCodecs(): Promise<DcmjsCodecs> {
  dcmjsCodecs ??= (async () => {
    const codecs = require('dcmjs-codecs') as DcmjsCodecs;
    await codecs.NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false });
    return codecs;
  })();
  dcmjsCodecs.catch(() => {
    dcmjsCodecs = undefined;
  });
  return dcmjsCodecs;
}

export interface LosslessJpegDecoder {
  decode(buffer: ArrayBuffer, offset?: number, length?: number): ArrayBufferView;
  precision?: number;
  numComp: number;
  xDim: number;
  yDim: number;
}

let losslessDecoderClass: (new () => LosslessJpegDecoder) | undefined;

/** jpeg-lossless-decoder-js: JPEG lossless (process 14, any selection value). Plain JavaScript. */
export function createLosslessJpegDecoder(): LosslessJpegDecoder {
  losslessDecoderClass ??= (require('jpeg-lossless-decoder-js') as { Decoder: new () => LosslessJpegDecoder })
    .Decoder;
  return new losslessDecoderClass();
}
