/**
 * The attributes Teleread reads, as dicom-parser keys ('x' + group + element, lower-case hex). Keyword names
 * follow PS3.6.
 */
export const TAG = {
  FileMetaInformationGroupLength: 'x00020000',
  MediaStorageSOPClassUID: 'x00020002',
  MediaStorageSOPInstanceUID: 'x00020003',
  TransferSyntaxUID: 'x00020010',

  SpecificCharacterSet: 'x00080005',
  SOPClassUID: 'x00080016',
  SOPInstanceUID: 'x00080018',
  StudyDate: 'x00080020',
  StudyTime: 'x00080030',
  AccessionNumber: 'x00080050',
  Modality: 'x00080060',
  StudyDescription: 'x00081030',
  SeriesDescription: 'x0008103e',

  PatientName: 'x00100010',
  PatientID: 'x00100020',
  PatientBirthDate: 'x00100030',
  PatientSex: 'x00100040',

  BodyPartExamined: 'x00180015',

  StudyInstanceUID: 'x0020000d',
  SeriesInstanceUID: 'x0020000e',
  SeriesNumber: 'x00200011',
  InstanceNumber: 'x00200013',

  SamplesPerPixel: 'x00280002',
  PhotometricInterpretation: 'x00280004',
  PlanarConfiguration: 'x00280006',
  NumberOfFrames: 'x00280008',
  Rows: 'x00280010',
  Columns: 'x00280011',
  BitsAllocated: 'x00280100',
  BitsStored: 'x00280101',
  HighBit: 'x00280102',
  PixelRepresentation: 'x00280103',
  PixelPaddingValue: 'x00280120',
  PixelPaddingRangeLimit: 'x00280121',
  WindowCenter: 'x00281050',
  WindowWidth: 'x00281051',
  RescaleIntercept: 'x00281052',
  RescaleSlope: 'x00281053',
  RedPaletteColorLookupTableDescriptor: 'x00281101',
  GreenPaletteColorLookupTableDescriptor: 'x00281102',
  BluePaletteColorLookupTableDescriptor: 'x00281103',
  RedPaletteColorLookupTableData: 'x00281201',
  GreenPaletteColorLookupTableData: 'x00281202',
  BluePaletteColorLookupTableData: 'x00281203',
  SegmentedRedPaletteColorLookupTableData: 'x00281221',
  FrameVOILUTSequence: 'x00289132',
  PixelValueTransformationSequence: 'x00289145',
  PixelMeasuresSequence: 'x00289110',
  PresentationLUTShape: 'x20500020',

  TotalPixelMatrixColumns: 'x00480006',
  TotalPixelMatrixRows: 'x00480007',

  SharedFunctionalGroupsSequence: 'x52009229',
  PerFrameFunctionalGroupsSequence: 'x52009230',
  WaveformSequence: 'x54000100',

  FloatPixelData: 'x7fe00008',
  DoubleFloatPixelData: 'x7fe00009',
  PixelData: 'x7fe00010',
} as const;

/** Formats a dicom-parser key as DICOM writes tags: (GGGG,EEEE). */
export function formatTag(key: string): string {
  const hex = key.startsWith('x') ? key.slice(1) : key;
  return `(${hex.slice(0, 4).toUpperCase()},${hex.slice(4, 8).toUpperCase()})`;
}
