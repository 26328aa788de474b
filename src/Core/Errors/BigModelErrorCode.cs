namespace BigModel.Errors;

/// <summary>
/// Every failure BigModel reports, with a stable number. The number is part of the public contract:
/// PowerShell error ids are <c>BigModel.{Name}</c>, MSBuild codes are <c>BM{number:D4}</c>, and neither
/// changes once released. Ranges group the kinds (see <see cref="BigModelErrorCategory"/>).
/// </summary>
public enum BigModelErrorCode
{
    // 1000-1099: locating files and reading them
    PathNotFound = 1000,
    NotACheckpoint = 1001,
    AmbiguousCheckpoint = 1002,
    IoFailure = 1003,
    UnsupportedFormat = 1004,

    // 1100-1199: safetensors
    SafetensorsFileTooSmall = 1100,
    SafetensorsHeaderTooLarge = 1101,
    SafetensorsHeaderTruncated = 1102,
    SafetensorsHeaderNotUtf8 = 1103,
    SafetensorsHeaderNotJson = 1104,
    SafetensorsHeaderNotObject = 1105,
    SafetensorsInvalidTensorEntry = 1106,
    SafetensorsUnknownDType = 1107,
    SafetensorsInvalidShape = 1108,
    SafetensorsInvalidOffsets = 1109,
    SafetensorsTensorSizeMismatch = 1110,
    SafetensorsPartialByte = 1111,
    SafetensorsDataLengthMismatch = 1112,
    SafetensorsDuplicateTensor = 1113,
    SafetensorsInvalidMetadata = 1114,
    SafetensorsHeaderStartsBadly = 1115,
    SafetensorsTooManyTensors = 1116,
    SafetensorsRankTooLarge = 1117,

    // 1200-1299: sharded index (*.index.json)
    IndexNotJson = 1200,
    IndexMissingWeightMap = 1201,
    IndexInvalidEntry = 1202,
    IndexPathEscapes = 1203,
    IndexShardMissing = 1204,
    IndexTensorMissingFromShard = 1205,
    IndexTensorNotListed = 1206,
    IndexTotalSizeMismatch = 1207,
    DuplicateTensorAcrossShards = 1208,

    // 1300-1399: PyTorch pickles (pytorch_model.bin)
    PickleNotZip = 1300,
    PickleZipEntryUnsafe = 1301,
    PickleZipEntryMissing = 1302,
    PickleZipEntryCompressed = 1303,
    PickleForbiddenGlobal = 1304,
    PickleInvalidOpcode = 1305,
    PickleMalformed = 1306,
    PickleUnsupportedProtocol = 1307,
    PickleStorageOutOfRange = 1308,
    PickleInvalidTensor = 1309,
    PickleTooLarge = 1310,
    PickleLegacyFormat = 1311,
    PickleZipCorrupt = 1312,
    PickleUnsupportedTensorType = 1313,

    // 1400-1499: config.json and architectures
    ConfigNotJson = 1400,
    ConfigInvalidValue = 1401,
    ConfigMissingValue = 1402,
    UnsupportedArchitecture = 1403,
    CheckpointDoesNotMatchArchitecture = 1404,

    // 1500-1599: user arguments
    InvalidSize = 1500,
    InvalidDType = 1501,
    InvalidArgument = 1502,
    InvalidDevice = 1503,
    InvalidDeviceMap = 1504,

    // 1600-1699: resources and budgets
    MemoryBudgetExceeded = 1600,
    ModelDoesNotFit = 1601,
    DiskFull = 1602,
    OffloadedToSlowerDevice = 1603,

    // 1700-1799: writing
    DestinationExists = 1700,
    DestinationInsideSource = 1701,
    DestinationLocked = 1702,
    WriteVerificationFailed = 1703,
    SourceInsideDestination = 1704,

    // 1800-1899: validation of tensor contents (Test-Checkpoint -Deep)
    NonFiniteValues = 1800,

    // 1900-1999: inference
    InferenceFailed = 1900,
    TokenizerMissing = 1901,
    Cancelled = 1902,
    TorchUnavailable = 1903,
    TokenizerInvalid = 1904,
    DeviceUnavailable = 1905,
    ModelKindMismatch = 1906,
    InvalidGenerationInput = 1907,
    OutputMismatch = 1908,
    RunnerFailed = 1909,

    // 2000-2099: device maps (planning, reading and checking maps)
    DeviceMapInvalidModuleName = 2000,
    DeviceMapModuleConflict = 2001,
    DeviceMapInvalidPattern = 2002,
    DeviceMapDuplicateDevice = 2003,
    DeviceMapTiedParameterInvalid = 2004,
    DeviceMapUncoveredTensors = 2005,
    DeviceMapTooLarge = 2006,
}
