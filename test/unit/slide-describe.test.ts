import { describe, expect, test } from 'vitest';
import { AppError } from '../../src/errors.js';
import { describeSlide, type SlideInfo } from '../../src/formats/slide/describe-slide.js';
import { readTiff } from '../../src/formats/slide/tiff.js';
import { byteSourceFromBytes } from '../../src/formats/types.js';
import { type WriteIfd, type WriteOptions, writeTiff } from '../helpers/tiff-writer.js';

async function describeBytes(ifds: WriteIfd[], opts: WriteOptions = {}): Promise<SlideInfo> {
  return describeSlide(await readTiff(byteSourceFromBytes(writeTiff(ifds, opts))));
}

/** Big virtual levels: every tile shares one blob, so a 40k level costs kilobytes. */
const tiled = (width: number, height: number, extra: Partial<WriteIfd> = {}): WriteIfd => ({
  width,
  height,
  tile: [256, 256],
  samplesPerPixel: 1,
  shareTileData: true,
  ...extra,
});
const stripped = (width: number, height: number, extra: Partial<WriteIfd> = {}): WriteIfd => ({
  width,
  height,
  samplesPerPixel: 1,
  ...extra,
});

const aperioDescription =
  'Aperio Image Library v12.0.5\r\n40000x30000 [0,0 40000x30000] (256x256) JPEG/RGB Q=70' +
  '|AppMag = 40|MPP = 0,2527|Date = 03/04/21|Time = 10:11:12|Time Zone = GMT-0500|Filename = slide-7';

const philipsXml = `<?xml version="1.0" encoding="UTF-8" ?>
<DataObject ObjectType="DPUfsImport">
  <Attribute Name="DICOM_MANUFACTURER" Group="0x0008" Element="0x0070" PMSVR="IString">PHILIPS</Attribute>
  <Attribute Name="DICOM_ACQUISITION_DATETIME" Group="0x0008" Element="0x002A" PMSVR="IString">20190318113045.000000</Attribute>
  <Attribute Name="PIM_DP_UFS_BARCODE" Group="0x301D" Element="0x1002" PMSVR="IString">Q0FTRS0xMjM0</Attribute>
  <Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray">
    <Array>
      <DataObject ObjectType="DPScannedImage">
        <Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">"0.1" "0.1"</Attribute>
        <Attribute Name="PIM_DP_IMAGE_TYPE" Group="0x301D" Element="0x1004" PMSVR="IString">MACROIMAGE</Attribute>
        <Attribute Name="PIM_DP_IMAGE_DATA" Group="0x301D" Element="0x1005" PMSVR="IString">/9j/4AAQ</Attribute>
      </DataObject>
      <DataObject ObjectType="DPScannedImage">
        <Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">"0.000226" "0.000227"</Attribute>
        <Attribute Name="PIM_DP_IMAGE_TYPE" Group="0x301D" Element="0x1004" PMSVR="IString">WSI</Attribute>
        <Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" Element="0x8B01" PMSVR="IDataObjectArray">
          <Array>
            <DataObject ObjectType="PixelDataRepresentation">
              <Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">"0.000226" "0.000227"</Attribute>
            </DataObject>
            <DataObject ObjectType="PixelDataRepresentation">
              <Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">"0.000904" "0.000908"</Attribute>
            </DataObject>
          </Array>
        </Attribute>
      </DataObject>
    </Array>
  </Attribute>
</DataObject>`;

const omeXml = `<?xml version="1.0" encoding="UTF-8"?><!-- Warning: this comment mentions <OME but is not it -->
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" Creator="teleread test">
  <Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="20.0"/></Instrument>
  <Image ID="Image:0" Name="slide"><AcquisitionDate>2022-05-06T07:08:09</AcquisitionDate>
    <Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="3" SizeT="1" SizeX="4096" SizeY="3072" SizeZ="1" Type="uint8"
      PhysicalSizeX="500" PhysicalSizeXUnit="nm" PhysicalSizeY="0.5" PhysicalSizeYUnit="µm">
      <Channel ID="Channel:0:0" SamplesPerPixel="3"/><TiffData IFD="0" PlaneCount="1"/>
    </Pixels>
  </Image>
  <Image ID="Image:1" Name="label image">
    <Pixels DimensionOrder="XYCZT" ID="Pixels:1" SizeC="3" SizeT="1" SizeX="300" SizeY="200" SizeZ="1" Type="uint8">
      <Channel ID="Channel:1:0" SamplesPerPixel="3"/><TiffData IFD="1" PlaneCount="1"/>
    </Pixels>
  </Image>
  <Image ID="Image:2" Name="macro image">
    <Pixels DimensionOrder="XYCZT" ID="Pixels:2" SizeC="3" SizeT="1" SizeX="600" SizeY="200" SizeZ="1" Type="uint8">
      <Channel ID="Channel:2:0" SamplesPerPixel="3"/>
    </Pixels>
  </Image>
</OME>`;

interface Case {
  name: string;
  ifds: WriteIfd[];
  opts?: WriteOptions;
  format: SlideInfo['format'];
  levels: Array<[number, number | undefined, number, number, number]>;
  associated: Array<[string, number, number, number]>;
  mpp?: [number, number];
  objectivePower?: number;
  scanDate?: string;
  properties?: Record<string, string>;
  absentProperties?: string[];
}

const cases: Case[] = [
  {
    name: 'Aperio SVS: tiled levels, stripped thumbnail, label and macro named in their descriptions',
    ifds: [
      tiled(40000, 30000, { description: aperioDescription }),
      stripped(1024, 768, { description: 'Aperio Image Library v12.0.5\r\n40000x30000 -> 1024x768 - ' }),
      tiled(10000, 7500, { description: 'Aperio Image Library v12.0.5\r\n...' }),
      tiled(2500, 1875),
      stripped(400, 380, { description: 'Aperio Image Library v12.0.5\nlabel 400x380' }),
      stripped(1280, 431, { description: 'Aperio Image Library v12.0.5\nmacro 1280x431' }),
    ],
    format: 'aperio-svs',
    levels: [
      [0, undefined, 40000, 30000, 1],
      [2, undefined, 10000, 7500, 4],
      [3, undefined, 2500, 1875, 16],
    ],
    associated: [
      ['thumbnail', 1, 1024, 768],
      ['label', 4, 400, 380],
      ['macro', 5, 1280, 431],
    ],
    mpp: [0.2527, 0.2527],
    objectivePower: 40,
    scanDate: '2021-03-04T10:11:12-05:00',
    properties: { 'aperio.AppMag': '40', 'aperio.Filename': 'slide-7' },
  },
  {
    name: 'Hamamatsu NDPI: positive lens at focal plane 0 are levels, -1 is the macro, -2 the map',
    opts: { ndpi: true },
    ifds: [
      stripped(8000, 6000, {
        ndpi: { lens: 40, propertyMap: 'Created=2011/05/23\r\nProduct=C9600-12\r\n' },
        resolution: { x: 43826, y: 43826, unit: 3 },
        make: 'Hamamatsu',
        dateTime: '2017:02:07 13:06:43',
      }),
      stripped(8000, 6000, { ndpi: { lens: 40, focalPlane: 2 } }),
      stripped(2000, 1500, { ndpi: { lens: 10 } }),
      stripped(500, 375, { ndpi: { lens: 2.5 } }),
      stripped(1188, 406, { ndpi: { lens: -1 } }),
      stripped(594, 203, { ndpi: { lens: -2 } }),
    ],
    format: 'hamamatsu-ndpi',
    levels: [
      [0, undefined, 8000, 6000, 1],
      [2, undefined, 2000, 1500, 4],
      [3, undefined, 500, 375, 16],
    ],
    associated: [['macro', 4, 1188, 406]],
    mpp: [10000 / 43826, 10000 / 43826],
    objectivePower: 40,
    scanDate: '2017-02-07T13:06:43',
    properties: { 'hamamatsu.Product': 'C9600-12', 'hamamatsu.SourceLens': '40', 'tiff.Make': 'Hamamatsu' },
  },
  {
    name: 'Philips TIFF: MPP and downsamples from the WSI pixel spacings, label/macro by description',
    ifds: [
      tiled(4096, 3072, { software: 'Philips DP v1.0', description: philipsXml }),
      tiled(1024, 768, { newSubfileType: 1 }),
      stripped(300, 200, { description: 'Label' }),
      stripped(600, 200, { description: 'Macro' }),
    ],
    format: 'philips-tiff',
    levels: [
      [0, undefined, 4096, 3072, 1],
      [1, undefined, 1024, 768, 4],
    ],
    associated: [
      ['label', 2, 300, 200],
      ['macro', 3, 600, 200],
    ],
    mpp: [0.227, 0.226],
    scanDate: '2019-03-18T11:30:45',
    properties: {
      'philips.DICOM_MANUFACTURER': 'PHILIPS',
      'philips.DICOM_PIXEL_SPACING': '"0.000226" "0.000227"',
    },
    absentProperties: ['philips.PIM_DP_UFS_BARCODE', 'philips.PIM_DP_IMAGE_DATA'],
  },
  {
    name: 'OME-TIFF: pyramid in SubIFDs, associated images from named OME Images',
    ifds: [
      tiled(4096, 3072, {
        description: omeXml,
        subIfds: [tiled(2048, 1536, { newSubfileType: 1 }), tiled(1024, 768, { newSubfileType: 1 })],
      }),
      stripped(300, 200),
      stripped(600, 200),
    ],
    format: 'ome-tiff',
    levels: [
      [0, undefined, 4096, 3072, 1],
      [0, 0, 2048, 1536, 2],
      [0, 1, 1024, 768, 4],
    ],
    associated: [
      ['label', 1, 300, 200],
      ['macro', 2, 600, 200],
    ],
    mpp: [0.5, 0.5],
    objectivePower: 20,
    scanDate: '2022-05-06T07:08:09',
    properties: { 'ome.Creator': 'teleread test', 'ome.Pixels.SizeX': '4096' },
  },
  {
    name: 'generic pyramid: same-aspect tiled pages, a mask and an unrelated page left out',
    ifds: [
      tiled(3000, 2000, { resolution: { x: 40000, y: 40000, unit: 3 }, dateTime: '2020:01:02 03:04:05' }),
      tiled(1500, 1000),
      tiled(1500, 1000, { newSubfileType: 4 }),
      tiled(800, 800),
      stripped(750, 500),
      tiled(375, 250),
    ],
    format: 'generic-tiff',
    levels: [
      [0, undefined, 3000, 2000, 1],
      [1, undefined, 1500, 1000, 2],
      [5, undefined, 375, 250, 8],
    ],
    associated: [],
    mpp: [0.25, 0.25],
    scanDate: '2020-01-02T03:04:05',
  },
  {
    name: 'generic pyramid whose first pages are label and overview (Ventana BIF layout)',
    opts: { bigTiff: true },
    ifds: [
      stripped(800, 600, { description: 'Label Image' }),
      stripped(1024, 400, { description: 'Thumbnail' }),
      tiled(40000, 30000, { description: 'level=0 mag=40 quality=95' }),
      tiled(10000, 7500, { description: 'level=1 mag=10 quality=95' }),
    ],
    format: 'generic-tiff',
    levels: [
      [2, undefined, 40000, 30000, 1],
      [3, undefined, 10000, 7500, 4],
    ],
    associated: [
      ['label', 0, 800, 600],
      ['macro', 1, 1024, 400],
    ],
  },
  {
    name: 'generic pyramid in SubIFDs (libvips subifd layout)',
    ifds: [tiled(3000, 2000, { subIfds: [tiled(1500, 1000), tiled(750, 500)] })],
    format: 'generic-tiff',
    levels: [
      [0, undefined, 3000, 2000, 1],
      [0, 0, 1500, 1000, 2],
      [0, 1, 750, 500, 4],
    ],
    associated: [],
  },
  {
    name: 'plain stripped TIFF: one level; a 72 dpi resolution is not a microscope scale',
    ifds: [stripped(640, 480, { resolution: { x: 28.3465, y: 28.3465, unit: 3 } })],
    format: 'generic-tiff',
    levels: [[0, undefined, 640, 480, 1]],
    associated: [],
  },
  {
    name: 'inch resolution units give no MPP (OpenSlide uses centimetres only)',
    ifds: [tiled(1000, 1000, { resolution: { x: 101600, y: 101600, unit: 2 } })],
    format: 'generic-tiff',
    levels: [[0, undefined, 1000, 1000, 1]],
    associated: [],
  },
];

describe('describeSlide', () => {
  test.each(cases)('$name', async (c) => {
    const info = await describeBytes(c.ifds, c.opts);
    expect(info.format).toBe(c.format);
    expect(info.levels.map((l) => [l.ifd, l.subifd, l.width, l.height, l.downsample])).toEqual(c.levels);
    expect(info.associated.map((a) => [a.name, a.ifd, a.width, a.height])).toEqual(c.associated);
    if (c.mpp) {
      expect(info.mppX).toBeCloseTo(c.mpp[0], 9);
      expect(info.mppY).toBeCloseTo(c.mpp[1], 9);
    } else {
      expect(info.mppX).toBeUndefined();
      expect(info.mppY).toBeUndefined();
    }
    expect(info.objectivePower).toBe(c.objectivePower);
    expect(info.scanDate).toBe(c.scanDate);
    expect(info.properties).toMatchObject(c.properties ?? {});
    for (const key of c.absentProperties ?? []) expect(info.properties).not.toHaveProperty(key);
    for (const level of info.levels) {
      expect(level.compression).toBe('none');
      expect(level.compressionCode).toBe(1);
    }
  });

  test('levels keep their tile size and compression', async () => {
    const info = await describeBytes([
      tiled(1000, 800, { compression: 33003 }),
      tiled(500, 400, { compression: 7 }),
      tiled(250, 200, { compression: 33004 }),
    ]);
    expect(info.levels.map((l) => [l.tileWidth, l.tileHeight, l.compression, l.compressionCode])).toEqual([
      [256, 256, 'aperio-jp2k-ycbcr', 33003],
      [256, 256, 'jpeg', 7],
      [256, 256, 'jp2k-ycbcr-lossy', 33004],
    ]);
  });

  test('properties stay bounded whatever the description holds', async () => {
    const pairs = Array.from({ length: 600 }, (_, i) => `Key${i} = ${'v'.repeat(3000)}`).join('|');
    const info = await describeBytes([tiled(100, 100, { description: `Aperio Image Library|${pairs}` })]);
    expect(Object.keys(info.properties).length).toBeLessThanOrEqual(512);
    expect(Math.max(...Object.values(info.properties).map((v) => v.length))).toBeLessThanOrEqual(2048);
  });

  test.each([
    {
      name: 'NDPI with only macro and map directories',
      ifds: [stripped(100, 50, { ndpi: { lens: -1 } }), stripped(50, 25, { ndpi: { lens: -2 } })],
    },
    {
      name: 'NDPI whose only level is on another focal plane',
      ifds: [stripped(100, 50, { ndpi: { lens: 20, focalPlane: 1 } })],
    },
  ])('$name → CORRUPT_FILE', async ({ ifds }) => {
    const err = await describeBytes(ifds, { ndpi: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('CORRUPT_FILE');
  });
});
