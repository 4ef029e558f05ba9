/**
 * DICOM PS3.15 Annex E, Table E.1-1 (Application Level Confidentiality Profile Attributes), as data: for each
 * attribute the Basic Profile action and whether the two options Teleread applies change it. The columns of the
 * other options (Retain Patient Characteristics, Retain Device Identity, Retain UIDs, Retain Safe Private, Retain
 * Institution Identity, Clean Graphics, Clean Structured Content, Clean Pixel Data) are not applied and not
 * listed. Keywords and VRs are the PS3.6 ones; the VR tells what a value means when a file stores it as UN or
 * in implicit VR.
 *
 * Three rows of the table are rules rather than attributes and are applied by `resolveProfileAction`:
 * private attributes (odd groups) X, Curve Data (50xx,xxxx) X, and Overlay Data / Overlay Comments (60xx,3000 /
 * 60xx,4000) X. The rows of group 0000 (command elements) and 0002 (file meta) are listed for completeness; the
 * de-identifier drops group 0000 from stored data sets and writes a new file meta.
 *
 * Source: PS3.15 Table E.1-1 as published in machine-readable form by the innolitics/dicom-standard project
 * (standard/confidentiality_profile_attributes.json); VRs and keywords from PS3.6.
 */

/** Basic Profile actions (PS3.15 E.1.1): D dummy, Z zero length or dummy, X remove, U replace UID; a slash
 * lists the choices that depend on the attribute's type in the IOD, and U* means "U for the UIDs inside". */
export type BasicProfileAction = 'D' | 'Z' | 'X' | 'U' | 'X/Z' | 'X/D' | 'Z/D' | 'X/Z/D' | 'X/Z/U*';

export interface ProfileAttribute {
  readonly tag: number;
  readonly keyword: string;
  readonly vr: string;
  readonly basicProfile: BasicProfileAction;
  /** 'C' in the Retain Longitudinal Temporal Information with Modified Dates Option column. */
  readonly modifiedDates?: 'C';
  /** 'C' in the Clean Descriptors Option column. */
  readonly cleanDescriptors?: 'C';
}

const MD = 'modifiedDates';
const CD = 'cleanDescriptors';

function a(
  tag: number,
  keyword: string,
  vr: string,
  basicProfile: BasicProfileAction,
  option?: typeof MD | typeof CD,
): ProfileAttribute {
  if (option === MD) return { tag, keyword, vr, basicProfile, modifiedDates: 'C' };
  if (option === CD) return { tag, keyword, vr, basicProfile, cleanDescriptors: 'C' };
  return { tag, keyword, vr, basicProfile };
}

/** Table E.1-1, sorted by tag. */
export const CONFIDENTIALITY_PROFILE: readonly ProfileAttribute[] = [
  a(0x00001000, 'AffectedSOPInstanceUID', 'UI', 'X'),
  a(0x00001001, 'RequestedSOPInstanceUID', 'UI', 'U'),
  a(0x00020003, 'MediaStorageSOPInstanceUID', 'UI', 'U'),
  a(0x00041511, 'ReferencedSOPInstanceUIDInFile', 'UI', 'U'),
  a(0x00080014, 'InstanceCreatorUID', 'UI', 'U'),
  a(0x00080015, 'InstanceCoercionDateTime', 'DT', 'X', MD),
  a(0x00080018, 'SOPInstanceUID', 'UI', 'U'),
  a(0x00080020, 'StudyDate', 'DA', 'Z', MD),
  a(0x00080021, 'SeriesDate', 'DA', 'X/D', MD),
  a(0x00080022, 'AcquisitionDate', 'DA', 'X/Z', MD),
  a(0x00080023, 'ContentDate', 'DA', 'Z/D', MD),
  a(0x00080024, 'OverlayDate', 'DA', 'X', MD),
  a(0x00080025, 'CurveDate', 'DA', 'X', MD),
  a(0x0008002a, 'AcquisitionDateTime', 'DT', 'X/Z/D', MD),
  a(0x00080030, 'StudyTime', 'TM', 'Z', MD),
  a(0x00080031, 'SeriesTime', 'TM', 'X/D', MD),
  a(0x00080032, 'AcquisitionTime', 'TM', 'X/Z', MD),
  a(0x00080033, 'ContentTime', 'TM', 'Z/D', MD),
  a(0x00080034, 'OverlayTime', 'TM', 'X', MD),
  a(0x00080035, 'CurveTime', 'TM', 'X', MD),
  a(0x00080050, 'AccessionNumber', 'SH', 'Z'),
  a(0x00080058, 'FailedSOPInstanceUIDList', 'UI', 'U'),
  a(0x00080080, 'InstitutionName', 'LO', 'X/Z/D'),
  a(0x00080081, 'InstitutionAddress', 'ST', 'X'),
  a(0x00080082, 'InstitutionCodeSequence', 'SQ', 'X/Z/D'),
  a(0x00080090, 'ReferringPhysicianName', 'PN', 'Z'),
  a(0x00080092, 'ReferringPhysicianAddress', 'ST', 'X'),
  a(0x00080094, 'ReferringPhysicianTelephoneNumbers', 'SH', 'X'),
  a(0x00080096, 'ReferringPhysicianIdentificationSequence', 'SQ', 'X'),
  a(0x0008009c, 'ConsultingPhysicianName', 'PN', 'Z'),
  a(0x0008009d, 'ConsultingPhysicianIdentificationSequence', 'SQ', 'X'),
  a(0x00080201, 'TimezoneOffsetFromUTC', 'SH', 'X', MD),
  a(0x00081010, 'StationName', 'SH', 'X/Z/D'),
  a(0x00081030, 'StudyDescription', 'LO', 'X', CD),
  a(0x0008103e, 'SeriesDescription', 'LO', 'X', CD),
  a(0x00081040, 'InstitutionalDepartmentName', 'LO', 'X'),
  a(0x00081041, 'InstitutionalDepartmentTypeCodeSequence', 'SQ', 'X'),
  a(0x00081048, 'PhysiciansOfRecord', 'PN', 'X'),
  a(0x00081049, 'PhysiciansOfRecordIdentificationSequence', 'SQ', 'X'),
  a(0x00081050, 'PerformingPhysicianName', 'PN', 'X'),
  a(0x00081052, 'PerformingPhysicianIdentificationSequence', 'SQ', 'X'),
  a(0x00081060, 'NameOfPhysiciansReadingStudy', 'PN', 'X'),
  a(0x00081062, 'PhysiciansReadingStudyIdentificationSequence', 'SQ', 'X'),
  a(0x00081070, 'OperatorsName', 'PN', 'X/Z/D'),
  a(0x00081072, 'OperatorIdentificationSequence', 'SQ', 'X/D'),
  a(0x00081080, 'AdmittingDiagnosesDescription', 'LO', 'X', CD),
  a(0x00081084, 'AdmittingDiagnosesCodeSequence', 'SQ', 'X', CD),
  a(0x00081110, 'ReferencedStudySequence', 'SQ', 'X/Z'),
  a(0x00081111, 'ReferencedPerformedProcedureStepSequence', 'SQ', 'X/Z/D'),
  a(0x00081120, 'ReferencedPatientSequence', 'SQ', 'X'),
  a(0x00081140, 'ReferencedImageSequence', 'SQ', 'X/Z/U*'),
  a(0x00081155, 'ReferencedSOPInstanceUID', 'UI', 'U'),
  a(0x00081195, 'TransactionUID', 'UI', 'U'),
  a(0x00082111, 'DerivationDescription', 'ST', 'X', CD),
  a(0x00082112, 'SourceImageSequence', 'SQ', 'X/Z/U*'),
  a(0x00083010, 'IrradiationEventUID', 'UI', 'U'),
  a(0x00084000, 'IdentifyingComments', 'LT', 'X', CD),
  a(0x00100010, 'PatientName', 'PN', 'Z'),
  a(0x00100020, 'PatientID', 'LO', 'Z'),
  a(0x00100021, 'IssuerOfPatientID', 'LO', 'X'),
  a(0x00100030, 'PatientBirthDate', 'DA', 'Z'),
  a(0x00100032, 'PatientBirthTime', 'TM', 'X'),
  a(0x00100040, 'PatientSex', 'CS', 'Z'),
  a(0x00100050, 'PatientInsurancePlanCodeSequence', 'SQ', 'X'),
  a(0x00100101, 'PatientPrimaryLanguageCodeSequence', 'SQ', 'X'),
  a(0x00100102, 'PatientPrimaryLanguageModifierCodeSequence', 'SQ', 'X'),
  a(0x00101000, 'OtherPatientIDs', 'LO', 'X'),
  a(0x00101001, 'OtherPatientNames', 'PN', 'X'),
  a(0x00101002, 'OtherPatientIDsSequence', 'SQ', 'X'),
  a(0x00101005, 'PatientBirthName', 'PN', 'X'),
  a(0x00101010, 'PatientAge', 'AS', 'X'),
  a(0x00101020, 'PatientSize', 'DS', 'X'),
  a(0x00101030, 'PatientWeight', 'DS', 'X'),
  a(0x00101040, 'PatientAddress', 'LO', 'X'),
  a(0x00101050, 'InsurancePlanIdentification', 'LO', 'X'),
  a(0x00101060, 'PatientMotherBirthName', 'PN', 'X'),
  a(0x00101080, 'MilitaryRank', 'LO', 'X'),
  a(0x00101081, 'BranchOfService', 'LO', 'X'),
  a(0x00101090, 'MedicalRecordLocator', 'LO', 'X'),
  a(0x00101100, 'ReferencedPatientPhotoSequence', 'SQ', 'X'),
  a(0x00102000, 'MedicalAlerts', 'LO', 'X', CD),
  a(0x00102110, 'Allergies', 'LO', 'X', CD),
  a(0x00102150, 'CountryOfResidence', 'LO', 'X'),
  a(0x00102152, 'RegionOfResidence', 'LO', 'X'),
  a(0x00102154, 'PatientTelephoneNumbers', 'SH', 'X'),
  a(0x00102155, 'PatientTelecomInformation', 'LT', 'X'),
  a(0x00102160, 'EthnicGroup', 'SH', 'X'),
  a(0x00102180, 'Occupation', 'SH', 'X', CD),
  a(0x001021a0, 'SmokingStatus', 'CS', 'X'),
  a(0x001021b0, 'AdditionalPatientHistory', 'LT', 'X', CD),
  a(0x001021c0, 'PregnancyStatus', 'US', 'X'),
  a(0x001021d0, 'LastMenstrualDate', 'DA', 'X', MD),
  a(0x001021f0, 'PatientReligiousPreference', 'LO', 'X'),
  a(0x00102203, 'PatientSexNeutered', 'CS', 'X/Z'),
  a(0x00102297, 'ResponsiblePerson', 'PN', 'X'),
  a(0x00102299, 'ResponsibleOrganization', 'LO', 'X'),
  a(0x00104000, 'PatientComments', 'LT', 'X', CD),
  a(0x00120010, 'ClinicalTrialSponsorName', 'LO', 'D'),
  a(0x00120020, 'ClinicalTrialProtocolID', 'LO', 'D'),
  a(0x00120021, 'ClinicalTrialProtocolName', 'LO', 'Z'),
  a(0x00120030, 'ClinicalTrialSiteID', 'LO', 'Z'),
  a(0x00120031, 'ClinicalTrialSiteName', 'LO', 'Z'),
  a(0x00120040, 'ClinicalTrialSubjectID', 'LO', 'D'),
  a(0x00120042, 'ClinicalTrialSubjectReadingID', 'LO', 'D'),
  a(0x00120050, 'ClinicalTrialTimePointID', 'LO', 'Z'),
  a(0x00120051, 'ClinicalTrialTimePointDescription', 'ST', 'X', CD),
  a(0x00120060, 'ClinicalTrialCoordinatingCenterName', 'LO', 'Z'),
  a(0x00120071, 'ClinicalTrialSeriesID', 'LO', 'X'),
  a(0x00120072, 'ClinicalTrialSeriesDescription', 'LO', 'X', CD),
  a(0x00120081, 'ClinicalTrialProtocolEthicsCommitteeName', 'LO', 'D'),
  a(0x00120082, 'ClinicalTrialProtocolEthicsCommitteeApprovalNumber', 'LO', 'X'),
  a(0x0016002b, 'MakerNote', 'OB', 'X', CD),
  a(0x0016004b, 'DeviceSettingDescription', 'OB', 'X', CD),
  a(0x0016004d, 'CameraOwnerName', 'UT', 'X'),
  a(0x0016004e, 'LensSpecification', 'DS', 'X'),
  a(0x0016004f, 'LensMake', 'UT', 'X'),
  a(0x00160050, 'LensModel', 'UT', 'X'),
  a(0x00160051, 'LensSerialNumber', 'UT', 'X'),
  a(0x00160070, 'GPSVersionID', 'OB', 'X'),
  a(0x00160071, 'GPSLatitudeRef', 'CS', 'X'),
  a(0x00160072, 'GPSLatitude', 'DS', 'X'),
  a(0x00160073, 'GPSLongitudeRef', 'CS', 'X'),
  a(0x00160074, 'GPSLongitude', 'DS', 'X'),
  a(0x00160075, 'GPSAltitudeRef', 'US', 'X'),
  a(0x00160076, 'GPSAltitude', 'DS', 'X'),
  a(0x00160077, 'GPSTimeStamp', 'DT', 'X'),
  a(0x00160078, 'GPSSatellites', 'UT', 'X'),
  a(0x00160079, 'GPSStatus', 'CS', 'X'),
  a(0x0016007a, 'GPSMeasureMode', 'CS', 'X'),
  a(0x0016007b, 'GPSDOP', 'DS', 'X'),
  a(0x0016007c, 'GPSSpeedRef', 'CS', 'X'),
  a(0x0016007d, 'GPSSpeed', 'DS', 'X'),
  a(0x0016007e, 'GPSTrackRef', 'CS', 'X'),
  a(0x0016007f, 'GPSTrack', 'DS', 'X'),
  a(0x00160080, 'GPSImgDirectionRef', 'CS', 'X'),
  a(0x00160081, 'GPSImgDirection', 'DS', 'X'),
  a(0x00160082, 'GPSMapDatum', 'UT', 'X'),
  a(0x00160083, 'GPSDestLatitudeRef', 'CS', 'X'),
  a(0x00160084, 'GPSDestLatitude', 'DS', 'X'),
  a(0x00160085, 'GPSDestLongitudeRef', 'CS', 'X'),
  a(0x00160086, 'GPSDestLongitude', 'DS', 'X'),
  a(0x00160087, 'GPSDestBearingRef', 'CS', 'X'),
  a(0x00160088, 'GPSDestBearing', 'DS', 'X'),
  a(0x00160089, 'GPSDestDistanceRef', 'CS', 'X'),
  a(0x0016008a, 'GPSDestDistance', 'DS', 'X'),
  a(0x0016008b, 'GPSProcessingMethod', 'OB', 'X'),
  a(0x0016008c, 'GPSAreaInformation', 'OB', 'X'),
  a(0x0016008d, 'GPSDateStamp', 'DT', 'X', MD),
  a(0x0016008e, 'GPSDifferential', 'IS', 'X'),
  a(0x00180010, 'ContrastBolusAgent', 'LO', 'Z/D', CD),
  a(0x00181000, 'DeviceSerialNumber', 'LO', 'X/Z/D'),
  a(0x00181002, 'DeviceUID', 'UI', 'U'),
  a(0x00181004, 'PlateID', 'LO', 'X'),
  a(0x00181005, 'GeneratorID', 'LO', 'X'),
  a(0x00181007, 'CassetteID', 'LO', 'X'),
  a(0x00181008, 'GantryID', 'LO', 'X'),
  a(0x00181009, 'UniqueDeviceIdentifier', 'UT', 'X'),
  a(0x0018100a, 'UDISequence', 'SQ', 'X'),
  a(0x0018100b, 'ManufacturerDeviceClassUID', 'UI', 'U'),
  a(0x00181030, 'ProtocolName', 'LO', 'X/D', CD),
  a(0x001811bb, 'AcquisitionFieldOfViewLabel', 'LO', 'D', CD),
  a(0x00181400, 'AcquisitionDeviceProcessingDescription', 'LO', 'X/D', CD),
  a(0x00182042, 'TargetUID', 'UI', 'U'),
  a(0x00184000, 'AcquisitionComments', 'LT', 'X', CD),
  a(0x00185011, 'TransducerIdentificationSequence', 'SQ', 'X'),
  a(0x0018700a, 'DetectorID', 'SH', 'X/D'),
  a(0x00189185, 'RespiratoryMotionCompensationTechniqueDescription', 'ST', 'X', CD),
  a(0x00189367, 'XRaySourceID', 'UC', 'D'),
  a(0x00189369, 'SourceStartDateTime', 'DT', 'D', MD),
  a(0x0018936a, 'SourceEndDateTime', 'DT', 'D', MD),
  a(0x00189371, 'XRayDetectorID', 'UC', 'D'),
  a(0x00189373, 'XRayDetectorLabel', 'ST', 'X'),
  a(0x0018937b, 'MultienergyAcquisitionDescription', 'UT', 'X', CD),
  a(0x0018937f, 'DecompositionDescription', 'UT', 'X', CD),
  a(0x00189424, 'AcquisitionProtocolDescription', 'LT', 'X', CD),
  a(0x00189516, 'StartAcquisitionDateTime', 'DT', 'X/D', MD),
  a(0x00189517, 'EndAcquisitionDateTime', 'DT', 'X/D', MD),
  a(0x00189937, 'RequestedSeriesDescription', 'LO', 'X', CD),
  a(0x0018a003, 'ContributionDescription', 'ST', 'X', CD),
  a(0x0020000d, 'StudyInstanceUID', 'UI', 'U'),
  a(0x0020000e, 'SeriesInstanceUID', 'UI', 'U'),
  a(0x00200010, 'StudyID', 'SH', 'Z'),
  a(0x00200052, 'FrameOfReferenceUID', 'UI', 'U'),
  a(0x00200200, 'SynchronizationFrameOfReferenceUID', 'UI', 'U'),
  a(0x00203401, 'ModifyingDeviceID', 'CS', 'X'),
  a(0x00203406, 'ModifiedImageDescription', 'LO', 'X'),
  a(0x00204000, 'ImageComments', 'LT', 'X', CD),
  a(0x00209158, 'FrameComments', 'LT', 'X', CD),
  a(0x00209161, 'ConcatenationUID', 'UI', 'U'),
  a(0x00209164, 'DimensionOrganizationUID', 'UI', 'U'),
  a(0x00281199, 'PaletteColorLookupTableUID', 'UI', 'U'),
  a(0x00281214, 'LargePaletteColorLookupTableUID', 'UI', 'U'),
  a(0x00284000, 'ImagePresentationComments', 'LT', 'X'),
  a(0x00320012, 'StudyIDIssuer', 'LO', 'X'),
  a(0x00321020, 'ScheduledStudyLocation', 'LO', 'X'),
  a(0x00321021, 'ScheduledStudyLocationAETitle', 'AE', 'X'),
  a(0x00321030, 'ReasonForStudy', 'LO', 'X', CD),
  a(0x00321032, 'RequestingPhysician', 'PN', 'X'),
  a(0x00321033, 'RequestingService', 'LO', 'X'),
  a(0x00321060, 'RequestedProcedureDescription', 'LO', 'X/Z', CD),
  a(0x00321066, 'ReasonForVisit', 'UT', 'X', CD),
  a(0x00321067, 'ReasonForVisitCodeSequence', 'SQ', 'X', CD),
  a(0x00321070, 'RequestedContrastAgent', 'LO', 'X', CD),
  a(0x00324000, 'StudyComments', 'LT', 'X', CD),
  a(0x00340001, 'FlowIdentifierSequence', 'SQ', 'D'),
  a(0x00340002, 'FlowIdentifier', 'OB', 'D'),
  a(0x00340005, 'SourceIdentifier', 'OB', 'D'),
  a(0x00340007, 'FrameOriginTimestamp', 'OB', 'D', MD),
  a(0x00380004, 'ReferencedPatientAliasSequence', 'SQ', 'X'),
  a(0x00380010, 'AdmissionID', 'LO', 'X'),
  a(0x00380011, 'IssuerOfAdmissionID', 'LO', 'X'),
  a(0x00380014, 'IssuerOfAdmissionIDSequence', 'SQ', 'X'),
  a(0x0038001e, 'ScheduledPatientInstitutionResidence', 'LO', 'X'),
  a(0x00380020, 'AdmittingDate', 'DA', 'X', MD),
  a(0x00380021, 'AdmittingTime', 'TM', 'X', MD),
  a(0x00380040, 'DischargeDiagnosisDescription', 'LO', 'X', CD),
  a(0x00380050, 'SpecialNeeds', 'LO', 'X'),
  a(0x00380060, 'ServiceEpisodeID', 'LO', 'X'),
  a(0x00380061, 'IssuerOfServiceEpisodeID', 'LO', 'X'),
  a(0x00380062, 'ServiceEpisodeDescription', 'LO', 'X', CD),
  a(0x00380064, 'IssuerOfServiceEpisodeIDSequence', 'SQ', 'X'),
  a(0x00380300, 'CurrentPatientLocation', 'LO', 'X'),
  a(0x00380400, 'PatientInstitutionResidence', 'LO', 'X'),
  a(0x00380500, 'PatientState', 'LO', 'X', CD),
  a(0x00384000, 'VisitComments', 'LT', 'X', CD),
  a(0x003a0310, 'MultiplexGroupUID', 'UI', 'U'),
  a(0x003a0314, 'ImpedanceMeasurementDateTime', 'DT', 'D', MD),
  a(0x00400001, 'ScheduledStationAETitle', 'AE', 'X'),
  a(0x00400002, 'ScheduledProcedureStepStartDate', 'DA', 'X', MD),
  a(0x00400003, 'ScheduledProcedureStepStartTime', 'TM', 'X', MD),
  a(0x00400004, 'ScheduledProcedureStepEndDate', 'DA', 'X', MD),
  a(0x00400005, 'ScheduledProcedureStepEndTime', 'TM', 'X', MD),
  a(0x00400006, 'ScheduledPerformingPhysicianName', 'PN', 'X'),
  a(0x00400007, 'ScheduledProcedureStepDescription', 'LO', 'X', CD),
  a(0x00400009, 'ScheduledProcedureStepID', 'SH', 'X'),
  a(0x0040000b, 'ScheduledPerformingPhysicianIdentificationSequence', 'SQ', 'X'),
  a(0x00400010, 'ScheduledStationName', 'SH', 'X'),
  a(0x00400011, 'ScheduledProcedureStepLocation', 'SH', 'X'),
  a(0x00400012, 'PreMedication', 'LO', 'X'),
  a(0x00400241, 'PerformedStationAETitle', 'AE', 'X'),
  a(0x00400242, 'PerformedStationName', 'SH', 'X'),
  a(0x00400243, 'PerformedLocation', 'SH', 'X'),
  a(0x00400244, 'PerformedProcedureStepStartDate', 'DA', 'X', MD),
  a(0x00400245, 'PerformedProcedureStepStartTime', 'TM', 'X', MD),
  a(0x00400250, 'PerformedProcedureStepEndDate', 'DA', 'X', MD),
  a(0x00400251, 'PerformedProcedureStepEndTime', 'TM', 'X', MD),
  a(0x00400253, 'PerformedProcedureStepID', 'SH', 'X'),
  a(0x00400254, 'PerformedProcedureStepDescription', 'LO', 'X', CD),
  a(0x00400275, 'RequestAttributesSequence', 'SQ', 'X', CD),
  a(0x00400280, 'CommentsOnThePerformedProcedureStep', 'ST', 'X', CD),
  a(0x00400310, 'CommentsOnRadiationDose', 'ST', 'X', CD),
  a(0x0040050a, 'SpecimenAccessionNumber', 'LO', 'X'),
  a(0x00400512, 'ContainerIdentifier', 'LO', 'D'),
  a(0x00400513, 'IssuerOfTheContainerIdentifierSequence', 'SQ', 'Z'),
  a(0x0040051a, 'ContainerDescription', 'LO', 'X', CD),
  a(0x00400551, 'SpecimenIdentifier', 'LO', 'D'),
  a(0x00400554, 'SpecimenUID', 'UI', 'U'),
  a(0x00400555, 'AcquisitionContextSequence', 'SQ', 'X/Z'),
  a(0x00400562, 'IssuerOfTheSpecimenIdentifierSequence', 'SQ', 'Z'),
  a(0x00400600, 'SpecimenShortDescription', 'LO', 'X', CD),
  a(0x00400602, 'SpecimenDetailedDescription', 'UT', 'X', CD),
  a(0x00400610, 'SpecimenPreparationSequence', 'SQ', 'Z'),
  a(0x004006fa, 'SlideIdentifier', 'LO', 'X'),
  a(0x00401001, 'RequestedProcedureID', 'SH', 'X'),
  a(0x00401002, 'ReasonForTheRequestedProcedure', 'LO', 'X', CD),
  a(0x00401004, 'PatientTransportArrangements', 'LO', 'X'),
  a(0x00401005, 'RequestedProcedureLocation', 'LO', 'X'),
  a(0x0040100a, 'ReasonForRequestedProcedureCodeSequence', 'SQ', 'X', CD),
  a(0x00401010, 'NamesOfIntendedRecipientsOfResults', 'PN', 'X'),
  a(0x00401011, 'IntendedRecipientsOfResultsIdentificationSequence', 'SQ', 'X'),
  a(0x00401101, 'PersonIdentificationCodeSequence', 'SQ', 'D'),
  a(0x00401102, 'PersonAddress', 'ST', 'X'),
  a(0x00401103, 'PersonTelephoneNumbers', 'LO', 'X'),
  a(0x00401104, 'PersonTelecomInformation', 'LT', 'X'),
  a(0x00401400, 'RequestedProcedureComments', 'LT', 'X', CD),
  a(0x00402001, 'ReasonForTheImagingServiceRequest', 'LO', 'X', CD),
  a(0x00402008, 'OrderEnteredBy', 'PN', 'X'),
  a(0x00402009, 'OrderEntererLocation', 'SH', 'X'),
  a(0x00402010, 'OrderCallbackPhoneNumber', 'SH', 'X'),
  a(0x00402011, 'OrderCallbackTelecomInformation', 'LT', 'X'),
  a(0x00402016, 'PlacerOrderNumberImagingServiceRequest', 'LO', 'Z'),
  a(0x00402017, 'FillerOrderNumberImagingServiceRequest', 'LO', 'Z'),
  a(0x00402400, 'ImagingServiceRequestComments', 'LT', 'X', CD),
  a(0x00403001, 'ConfidentialityConstraintOnPatientDataDescription', 'LO', 'X'),
  a(0x00404005, 'ScheduledProcedureStepStartDateTime', 'DT', 'X', MD),
  a(0x00404008, 'ScheduledProcedureStepExpirationDateTime', 'DT', 'X', MD),
  a(0x00404010, 'ScheduledProcedureStepModificationDateTime', 'DT', 'X', MD),
  a(0x00404011, 'ExpectedCompletionDateTime', 'DT', 'X', MD),
  a(0x00404023, 'ReferencedGeneralPurposeScheduledProcedureStepTransactionUID', 'UI', 'U'),
  a(0x00404025, 'ScheduledStationNameCodeSequence', 'SQ', 'X'),
  a(0x00404027, 'ScheduledStationGeographicLocationCodeSequence', 'SQ', 'X'),
  a(0x00404028, 'PerformedStationNameCodeSequence', 'SQ', 'X'),
  a(0x00404030, 'PerformedStationGeographicLocationCodeSequence', 'SQ', 'X'),
  a(0x00404034, 'ScheduledHumanPerformersSequence', 'SQ', 'X'),
  a(0x00404035, 'ActualHumanPerformersSequence', 'SQ', 'X'),
  a(0x00404036, 'HumanPerformerOrganization', 'LO', 'X'),
  a(0x00404037, 'HumanPerformerName', 'PN', 'X'),
  a(0x00404050, 'PerformedProcedureStepStartDateTime', 'DT', 'X', MD),
  a(0x00404051, 'PerformedProcedureStepEndDateTime', 'DT', 'X', MD),
  a(0x00404052, 'ProcedureStepCancellationDateTime', 'DT', 'X', MD),
  a(0x0040a027, 'VerifyingOrganization', 'LO', 'D'),
  a(0x0040a073, 'VerifyingObserverSequence', 'SQ', 'D'),
  a(0x0040a075, 'VerifyingObserverName', 'PN', 'D'),
  a(0x0040a078, 'AuthorObserverSequence', 'SQ', 'X'),
  a(0x0040a07a, 'ParticipantSequence', 'SQ', 'X'),
  a(0x0040a07c, 'CustodialOrganizationSequence', 'SQ', 'X'),
  a(0x0040a088, 'VerifyingObserverIdentificationCodeSequence', 'SQ', 'Z'),
  a(0x0040a123, 'PersonName', 'PN', 'D'),
  a(0x0040a124, 'UID', 'UI', 'U'),
  a(0x0040a171, 'ObservationUID', 'UI', 'U'),
  a(0x0040a172, 'ReferencedObservationUIDTrial', 'UI', 'U'),
  a(0x0040a192, 'ObservationDateTrial', 'DA', 'X', MD),
  a(0x0040a193, 'ObservationTimeTrial', 'TM', 'X', MD),
  a(0x0040a307, 'CurrentObserverTrial', 'PN', 'X'),
  a(0x0040a352, 'VerbalSourceTrial', 'PN', 'X'),
  a(0x0040a353, 'AddressTrial', 'ST', 'X'),
  a(0x0040a354, 'TelephoneNumberTrial', 'LO', 'X'),
  a(0x0040a358, 'VerbalSourceIdentifierCodeSequenceTrial', 'SQ', 'X'),
  a(0x0040a402, 'ObservationSubjectUIDTrial', 'UI', 'U'),
  a(0x0040a730, 'ContentSequence', 'SQ', 'D'),
  a(0x0040db0c, 'TemplateExtensionOrganizationUID', 'UI', 'U'),
  a(0x0040db0d, 'TemplateExtensionCreatorUID', 'UI', 'U'),
  a(0x0050001b, 'ContainerComponentID', 'LO', 'X'),
  a(0x00500020, 'DeviceDescription', 'LO', 'X'),
  a(0x00500021, 'LongDeviceDescription', 'ST', 'X', CD),
  a(0x00620021, 'TrackingUID', 'UI', 'U'),
  a(0x00700001, 'GraphicAnnotationSequence', 'SQ', 'D'),
  a(0x00700084, 'ContentCreatorName', 'PN', 'Z/D'),
  a(0x00700086, 'ContentCreatorIdentificationCodeSequence', 'SQ', 'X'),
  a(0x0070031a, 'FiducialUID', 'UI', 'U'),
  a(0x00701101, 'PresentationDisplayCollectionUID', 'UI', 'U'),
  a(0x00701102, 'PresentationSequenceCollectionUID', 'UI', 'U'),
  a(0x00880140, 'StorageMediaFileSetUID', 'UI', 'U'),
  a(0x00880200, 'IconImageSequence', 'SQ', 'X'),
  a(0x00880904, 'TopicTitle', 'LO', 'X'),
  a(0x00880906, 'TopicSubject', 'ST', 'X'),
  a(0x00880910, 'TopicAuthor', 'LO', 'X'),
  a(0x00880912, 'TopicKeywords', 'LO', 'X'),
  a(0x04000100, 'DigitalSignatureUID', 'UI', 'U'),
  a(0x04000402, 'ReferencedDigitalSignatureSequence', 'SQ', 'X'),
  a(0x04000403, 'ReferencedSOPInstanceMACSequence', 'SQ', 'X'),
  a(0x04000404, 'MAC', 'OB', 'X'),
  a(0x04000550, 'ModifiedAttributesSequence', 'SQ', 'X'),
  a(0x04000551, 'NonconformingModifiedAttributesSequence', 'SQ', 'X'),
  a(0x04000552, 'NonconformingDataElementValue', 'OB', 'X'),
  a(0x04000561, 'OriginalAttributesSequence', 'SQ', 'X'),
  a(0x04000600, 'InstanceOriginStatus', 'CS', 'X'),
  a(0x20300020, 'TextString', 'LO', 'X'),
  a(0x22000002, 'LabelText', 'UT', 'X/Z', CD),
  a(0x22000005, 'BarcodeValue', 'LT', 'X/Z'),
  a(0x30060002, 'StructureSetLabel', 'SH', 'D', CD),
  a(0x30060004, 'StructureSetName', 'LO', 'X', CD),
  a(0x30060006, 'StructureSetDescription', 'ST', 'X', CD),
  a(0x30060008, 'StructureSetDate', 'DA', 'Z', MD),
  a(0x30060009, 'StructureSetTime', 'TM', 'X/D', MD),
  a(0x30060024, 'ReferencedFrameOfReferenceUID', 'UI', 'U'),
  a(0x30060026, 'ROIName', 'LO', 'Z', CD),
  a(0x30060028, 'ROIDescription', 'ST', 'X', CD),
  a(0x30060038, 'ROIGenerationDescription', 'LO', 'X', CD),
  a(0x30060085, 'ROIObservationLabel', 'SH', 'X', CD),
  a(0x30060088, 'ROIObservationDescription', 'ST', 'X', CD),
  a(0x300600a6, 'ROIInterpreter', 'PN', 'Z'),
  a(0x300600c2, 'RelatedFrameOfReferenceUID', 'UI', 'U'),
  a(0x30080054, 'FirstTreatmentDate', 'DA', 'X/D', MD),
  a(0x30080056, 'MostRecentTreatmentDate', 'DA', 'X/D', MD),
  a(0x30080105, 'SourceSerialNumber', 'LO', 'X/Z'),
  a(0x30080250, 'TreatmentDate', 'DA', 'X/D', MD),
  a(0x30080251, 'TreatmentTime', 'TM', 'X/D', MD),
  a(0x300a0002, 'RTPlanLabel', 'SH', 'D', CD),
  a(0x300a0003, 'RTPlanName', 'LO', 'X', CD),
  a(0x300a0004, 'RTPlanDescription', 'ST', 'X', CD),
  a(0x300a0006, 'RTPlanDate', 'DA', 'X/D', MD),
  a(0x300a0007, 'RTPlanTime', 'TM', 'X/D', MD),
  a(0x300a000e, 'PrescriptionDescription', 'ST', 'X', CD),
  a(0x300a0013, 'DoseReferenceUID', 'UI', 'U'),
  a(0x300a0016, 'DoseReferenceDescription', 'LO', 'X', CD),
  a(0x300a0072, 'FractionGroupDescription', 'LO', 'X', CD),
  a(0x300a0083, 'ReferencedDoseReferenceUID', 'UI', 'U'),
  // X in the table this file was made from; X/Z in the current edition, as it is Type 2 in the RT Beams and RT
  // Ion Beams modules (removing it left dciodvfy an error in every RT plan).
  a(0x300a00b2, 'TreatmentMachineName', 'SH', 'X/Z'),
  a(0x300a00c3, 'BeamDescription', 'ST', 'X', CD),
  a(0x300a00dd, 'BolusDescription', 'ST', 'X', CD),
  a(0x300a0196, 'FixationDeviceDescription', 'ST', 'X', CD),
  a(0x300a01a6, 'ShieldingDeviceDescription', 'ST', 'X', CD),
  a(0x300a01b2, 'SetupTechniqueDescription', 'ST', 'X', CD),
  a(0x300a0216, 'SourceManufacturer', 'LO', 'X'),
  a(0x300a02eb, 'CompensatorDescription', 'LT', 'X', CD),
  a(0x300a0608, 'TreatmentPositionGroupLabel', 'LO', 'D', CD),
  a(0x300a0609, 'TreatmentPositionGroupUID', 'UI', 'U'),
  a(0x300a0611, 'RTAccessoryHolderSlotID', 'LO', 'Z'),
  a(0x300a0615, 'RTAccessoryDeviceSlotID', 'LO', 'Z'),
  a(0x300a0619, 'RadiationDoseIdentificationLabel', 'LO', 'D', CD),
  a(0x300a0623, 'RadiationDoseInVivoMeasurementLabel', 'LO', 'D', CD),
  a(0x300a062a, 'RTToleranceSetLabel', 'LO', 'D', CD),
  a(0x300a0650, 'PatientSetupUID', 'UI', 'U'),
  a(0x300a0676, 'EquipmentFrameOfReferenceDescription', 'ST', 'X', CD),
  a(0x300a067c, 'RadiationGenerationModeLabel', 'SH', 'D', CD),
  a(0x300a067d, 'RadiationGenerationModeDescription', 'ST', 'Z', CD),
  a(0x300a0700, 'TreatmentSessionUID', 'UI', 'U'),
  a(0x300a0734, 'TreatmentToleranceViolationDescription', 'ST', 'D', CD),
  a(0x300a0736, 'TreatmentToleranceViolationDateTime', 'DT', 'D', MD),
  a(0x300a073a, 'RecordedRTControlPointDateTime', 'DT', 'D', MD),
  a(0x300a0741, 'InterlockDateTime', 'DT', 'D', MD),
  a(0x300a0742, 'InterlockDescription', 'ST', 'D', CD),
  a(0x300a0760, 'OverrideDateTime', 'DT', 'D', MD),
  a(0x300a0783, 'InterlockOriginDescription', 'ST', 'D', CD),
  a(0x300c0113, 'ReasonForOmissionDescription', 'LO', 'X', CD),
  a(0x300e0008, 'ReviewerName', 'PN', 'X/Z'),
  a(0x30100006, 'ConceptualVolumeUID', 'UI', 'U'),
  a(0x3010000b, 'ReferencedConceptualVolumeUID', 'UI', 'U'),
  a(0x3010000f, 'ConceptualVolumeCombinationDescription', 'ST', 'Z', CD),
  a(0x30100013, 'ConstituentConceptualVolumeUID', 'UI', 'U'),
  a(0x30100015, 'SourceConceptualVolumeUID', 'UI', 'U'),
  a(0x30100017, 'ConceptualVolumeDescription', 'ST', 'Z', CD),
  a(0x3010001b, 'DeviceAlternateIdentifier', 'UC', 'Z'),
  a(0x3010002d, 'DeviceLabel', 'LO', 'D'),
  a(0x30100031, 'ReferencedFiducialsUID', 'UI', 'U'),
  a(0x30100033, 'UserContentLabel', 'SH', 'D', CD),
  a(0x30100034, 'UserContentLongLabel', 'LO', 'D', CD),
  a(0x30100035, 'EntityLabel', 'SH', 'D', CD),
  a(0x30100036, 'EntityName', 'LO', 'X', CD),
  a(0x30100037, 'EntityDescription', 'ST', 'X', CD),
  a(0x30100038, 'EntityLongLabel', 'LO', 'D', CD),
  a(0x3010003b, 'RTTreatmentPhaseUID', 'UI', 'U'),
  a(0x30100043, 'ManufacturerDeviceIdentifier', 'ST', 'Z'),
  a(0x3010004c, 'IntendedPhaseStartDate', 'DA', 'X/D', MD),
  a(0x3010004d, 'IntendedPhaseEndDate', 'DA', 'X/D', MD),
  a(0x30100054, 'RTPrescriptionLabel', 'LO', 'D', CD),
  a(0x30100056, 'RTTreatmentApproachLabel', 'LO', 'X/D', CD),
  a(0x3010005a, 'RTPhysicianIntentNarrative', 'UT', 'Z', CD),
  a(0x3010005c, 'ReasonForSuperseding', 'ST', 'Z', CD),
  a(0x30100061, 'PriorTreatmentDoseDescription', 'UT', 'X', CD),
  a(0x3010006e, 'DosimetricObjectiveUID', 'UI', 'U'),
  a(0x3010006f, 'ReferencedDosimetricObjectiveUID', 'UI', 'U'),
  a(0x30100077, 'TreatmentSite', 'LO', 'D', CD),
  a(0x3010007a, 'TreatmentTechniqueNotes', 'UT', 'Z', CD),
  a(0x3010007b, 'PrescriptionNotes', 'UT', 'Z', CD),
  a(0x3010007f, 'FractionationNotes', 'UT', 'Z', CD),
  a(0x30100081, 'PrescriptionNotesSequence', 'SQ', 'Z', CD),
  a(0x40000010, 'Arbitrary', 'LT', 'X'),
  a(0x40004000, 'TextComments', 'LT', 'X'),
  a(0x40080042, 'ResultsIDIssuer', 'LO', 'X'),
  a(0x40080102, 'InterpretationRecorder', 'PN', 'X'),
  a(0x4008010a, 'InterpretationTranscriber', 'PN', 'X'),
  a(0x4008010b, 'InterpretationText', 'ST', 'X', CD),
  a(0x4008010c, 'InterpretationAuthor', 'PN', 'X'),
  a(0x40080111, 'InterpretationApproverSequence', 'SQ', 'X'),
  a(0x40080114, 'PhysicianApprovingInterpretation', 'PN', 'X'),
  a(0x40080115, 'InterpretationDiagnosisDescription', 'LT', 'X', CD),
  a(0x40080118, 'ResultsDistributionListSequence', 'SQ', 'X'),
  a(0x40080119, 'DistributionName', 'PN', 'X'),
  a(0x4008011a, 'DistributionAddress', 'LO', 'X'),
  a(0x40080202, 'InterpretationIDIssuer', 'LO', 'X'),
  a(0x40080300, 'Impressions', 'ST', 'X', CD),
  a(0x40084000, 'ResultsComments', 'ST', 'X', CD),
  a(0xfffafffa, 'DigitalSignaturesSequence', 'SQ', 'X'),
  a(0xfffcfffc, 'DataSetTrailingPadding', 'OB', 'X'),
];

const BY_TAG: ReadonlyMap<number, ProfileAttribute> = new Map(CONFIDENTIALITY_PROFILE.map((p) => [p.tag, p]));

export function profileAttribute(tag: number): ProfileAttribute | undefined {
  return BY_TAG.get(tag);
}

/**
 * Every standard DA and DT attribute of PS3.6 (retired ones too), so that dates can be shifted in implicit VR data
 * sets and in values stored as UN. The Modified Dates Option lists the identifying dates; Teleread shifts every
 * date by the same offset, so that intervals between any two of them (acquisition to calibration, birth excluded:
 * it is emptied) stay true. Context Group and Template versions are left out: they date a coding resource, not a
 * patient event.
 */
const DA_TAGS = [
  0x00080012, 0x00080020, 0x00080021, 0x00080022, 0x00080023, 0x00080024, 0x00080025, 0x00100030, 0x001021d0,
  0x00120086, 0x00120087, 0x00140102, 0x00141020, 0x00143076, 0x00144076, 0x00144078, 0x0014407a, 0x0014407e,
  0x00181012, 0x00181200, 0x00181204, 0x00181205, 0x0018700c, 0x00203403, 0x00320032, 0x00320034, 0x00321000,
  0x00321010, 0x00321040, 0x00321050, 0x0038001a, 0x0038001c, 0x00380020, 0x00380030, 0x00400002, 0x00400004,
  0x00400244, 0x00400250, 0x00402004, 0x0040a023, 0x0040a110, 0x0040a121, 0x0040a192, 0x00700082, 0x00720061,
  0x21000040, 0x30060008, 0x30080024, 0x30080054, 0x30080056, 0x30080162, 0x30080166, 0x30080250, 0x300a0006,
  0x300a022c, 0x300e0004, 0x3010004c, 0x3010004d, 0x40080100, 0x40080108, 0x40080112,
];
const DT_TAGS = [
  0x00080015, 0x0008002a, 0x00080404, 0x00080416, 0x0008041f, 0x00160077, 0x0016008d, 0x00181078, 0x00181079,
  0x00181202, 0x00181203, 0x00189074, 0x00189151, 0x00189369, 0x0018936a, 0x00189516, 0x00189517, 0x00189623,
  0x00189701, 0x00189804, 0x00189919, 0x0018a002, 0x003a0314, 0x00404005, 0x00404008, 0x00404010, 0x00404011,
  0x00404050, 0x00404051, 0x00404052, 0x0040a030, 0x0040a032, 0x0040a033, 0x0040a082, 0x0040a120, 0x0040a13a,
  0x0040e004, 0x00440004, 0x0044000b, 0x00440010, 0x00440104, 0x00440105, 0x00686226, 0x00686270, 0x0072000a,
  0x00720063, 0x01000420, 0x04000105, 0x04000562, 0x3006002d, 0x3006002e, 0x300a0736, 0x300a073a, 0x300a0741,
  0x300a0760, 0x300c0127, 0x40101025, 0x40101026, 0x4010102b, 0x40101041,
];
export const DATE_ATTRIBUTE_VR: ReadonlyMap<number, 'DA' | 'DT'> = new Map<number, 'DA' | 'DT'>([
  ...DA_TAGS.map((t) => [t, 'DA'] as const),
  ...DT_TAGS.map((t) => [t, 'DT'] as const),
]);

/**
 * Free-text attributes that a D (dummy) sequence may carry, for data sets whose VRs are not in the file (implicit
 * VR): SR and presentation state text. With explicit VR every PN, LT, ST and UT inside such a sequence is
 * replaced as well.
 */
export const FREE_TEXT_ATTRIBUTE_VR: ReadonlyMap<number, string> = new Map([
  [0x0040a160, 'UT'], // TextValue
  [0x00700006, 'ST'], // UnformattedTextValue
]);

/** What is done to one attribute once the two options are applied to its Table E.1-1 row. */
export type ProfileOperation =
  /** X */
  | 'remove'
  /** Z: zero-length value, or a sequence with no items. */
  | 'empty'
  /** D: a dummy value of the same VR; for a sequence, its items are de-identified and their free text replaced. */
  | 'dummy'
  /** U: each UID replaced by its mapping. */
  | 'replaceUid'
  /** X/Z/U*: the sequence is kept; the UIDs inside are replaced (by their own U rows). */
  | 'keepReplaceUids'
  /** C of the Modified Dates Option: DA and DT shifted by the per-case offset. */
  | 'shiftDates'
  /** C of the Clean Descriptors Option: identifying content removed from the text; `fallback` if none is left. */
  | 'clean';

export interface ResolvedAction {
  readonly operation: ProfileOperation;
  /** The Basic Profile operation, used when the option's C cannot be applied to the value at hand. */
  readonly fallback: ProfileOperation;
  readonly attribute?: ProfileAttribute | undefined;
}

/**
 * X/Z, X/D, Z/D and X/Z/D leave the choice to the attribute's type in the IOD (1, 2 or 3), which a de-identifier
 * that serves every IOD does not know. Z is valid for Type 2 and Type 3, D for every type, so those are chosen:
 * the output never loses a mandatory attribute the input had.
 */
export function basicOperation(action: BasicProfileAction): ProfileOperation {
  switch (action) {
    case 'X':
      return 'remove';
    case 'Z':
    case 'X/Z':
      return 'empty';
    case 'D':
    case 'X/D':
    case 'Z/D':
    case 'X/Z/D':
      return 'dummy';
    case 'U':
      return 'replaceUid';
    case 'X/Z/U*':
      return 'keepReplaceUids';
  }
}

/**
 * For a sequence, Z (no items) is valid only where the sequence is Type 2: a Type 3 sequence that is present must
 * have an item. Of the sequences marked X/Z, Referenced Study Sequence is Type 3 in the General Study module and
 * is removed; Acquisition Context Sequence is Type 2 in its module and is emptied.
 */
const TYPE_2_SEQUENCES: ReadonlySet<number> = new Set([0x00400555]);

const REMOVE: ResolvedAction = { operation: 'remove', fallback: 'remove' };

/** Whole overlay groups go, not only Overlay Data and Overlay Comments: an overlay plane without its data is an
 * invalid Overlay Plane module, and the Clean Graphics Option that would keep it is not applied. */
function isOverlayOrCurveGroup(group: number): boolean {
  const base = group & 0xff00;
  return (base === 0x6000 || base === 0x5000) && (group & 0xff) <= 0x1e;
}

/** The action for a tag under the Basic Profile with the Modified Dates and Clean Descriptors options, or
 * undefined for an attribute the table does not list (kept, its dates shifted, its sequences recursed). */
export function resolveProfileAction(tag: number): ResolvedAction | undefined {
  const group = tag >>> 16;
  // Private attributes: the Retain Safe Private Option is not applied. Odd groups 1, 3, 5, 7 and FFFF are not
  // private but are not allowed at all; they go too.
  if (group % 2 === 1) return REMOVE;
  if (isOverlayOrCurveGroup(group)) return REMOVE;
  const attribute = BY_TAG.get(tag);
  if (!attribute) return undefined;
  const fallback =
    attribute.vr === 'SQ' && attribute.basicProfile === 'X/Z' && !TYPE_2_SEQUENCES.has(tag)
      ? 'remove'
      : basicOperation(attribute.basicProfile);
  if (attribute.modifiedDates === 'C') return { operation: 'shiftDates', fallback, attribute };
  if (attribute.cleanDescriptors === 'C') return { operation: 'clean', fallback, attribute };
  return { operation: fallback, fallback, attribute };
}

export interface CodedConcept {
  readonly codeValue: string;
  readonly codingSchemeDesignator: string;
  readonly codeMeaning: string;
}

/** CID 7050 De-identification Method, one code per profile and option applied, for (0012,0064). */
export const DEIDENTIFICATION_METHOD_CODES: readonly CodedConcept[] = [
  {
    codeValue: '113100',
    codingSchemeDesignator: 'DCM',
    codeMeaning: 'Basic Application Confidentiality Profile',
  },
  {
    codeValue: '113107',
    codingSchemeDesignator: 'DCM',
    codeMeaning: 'Retain Longitudinal Temporal Information Modified Dates Option',
  },
  { codeValue: '113105', codingSchemeDesignator: 'DCM', codeMeaning: 'Clean Descriptors Option' },
];
