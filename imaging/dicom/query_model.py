"""The query/retrieve information model Search answers: which attribute is at which level, what each
level returns, and which attributes the catalog indexes.

Levels nest as in the Patient Root and Study Root models of PS3.4 C.6: patient,
study, series, instance. An attribute belongs to the patient or study level if
it is in :data:`STUDY_LEVEL` (the Patient and Study IE attributes of PS3.4
C.6.1.1.2-3 and C.6.2.1.2, and what the Patient Study module adds), to the series
level if it is in :data:`SERIES_LEVEL` (C.6.1.1.4, the General Series and General
Equipment modules), and to the instance level otherwise. Ingest keeps each study's
and series' attributes of these lists (from their first instance) and each
instance's :data:`INSTANCE_LEVEL` ones; Search returns them from there.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from voxelgate.errors import InvalidInputError

Level = Literal["patient", "study", "series", "instance"]
LEVELS: tuple[Level, ...] = ("patient", "study", "series", "instance")
#: 0 for patient and study (a patient's attributes are its studies' in the study root), 1, 2.
DEPTH: dict[Level, int] = {"patient": 0, "study": 0, "series": 1, "instance": 2}


def _tags(keywords: str) -> frozenset[int]:
    out = set()
    for k in keywords.split():
        t = tag_for_keyword(k)
        assert t is not None, k
        out.add(int(t))
    return frozenset(out)


PATIENT_LEVEL = _tags(
    """PatientName PatientID IssuerOfPatientID IssuerOfPatientIDQualifiersSequence OtherPatientIDsSequence
    OtherPatientNames PatientBirthDate PatientBirthTime PatientSex PatientBirthName PatientMotherBirthName
    PatientComments EthnicGroup PatientSpeciesDescription PatientSpeciesCodeSequence PatientBreedDescription
    PatientBreedCodeSequence BreedRegistrationSequence ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization
    PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence QualityControlSubject
    StrainDescription StrainNomenclature StrainAdditionalInformation ClinicalTrialSponsorName ClinicalTrialProtocolID
    ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialSubjectID
    ClinicalTrialSubjectReadingID"""
)
STUDY_LEVEL = PATIENT_LEVEL | _tags(
    """StudyDate StudyTime AccessionNumber IssuerOfAccessionNumberSequence StudyID StudyInstanceUID
    ReferringPhysicianName ReferringPhysicianIdentificationSequence ConsultingPhysicianName
    ConsultingPhysicianIdentificationSequence StudyDescription ProcedureCodeSequence PhysiciansOfRecord
    PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy PhysiciansReadingStudyIdentificationSequence
    RequestingService AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence PatientAge PatientSize PatientWeight
    PatientSizeCodeSequence Occupation AdditionalPatientHistory AdmissionID IssuerOfAdmissionIDSequence
    ReasonForPerformedProcedureCodeSequence PatientSexNeutered SmokingStatus PregnancyStatus LastMenstrualDate
    MedicalAlerts Allergies ServiceEpisodeID ServiceEpisodeDescription IssuerOfServiceEpisodeIDSequence PatientState
    ClinicalTrialTimePointID ClinicalTrialTimePointDescription ConsentForClinicalTrialUseSequence
    TimezoneOffsetFromUTC"""
)
SERIES_LEVEL = _tags(
    """Modality SeriesInstanceUID SeriesNumber SeriesDescription SeriesDescriptionCodeSequence SeriesDate SeriesTime
    Laterality BodyPartExamined ProtocolName OperatorsName OperatorIdentificationSequence PerformingPhysicianName
    PerformingPhysicianIdentificationSequence PerformedProcedureStepStartDate PerformedProcedureStepStartTime
    PerformedProcedureStepEndDate PerformedProcedureStepEndTime PerformedProcedureStepID
    PerformedProcedureStepDescription PerformedProtocolCodeSequence CommentsOnThePerformedProcedureStep
    RequestAttributesSequence ReferencedPerformedProcedureStepSequence PatientPosition AnatomicalOrientationType
    Manufacturer InstitutionName InstitutionAddress StationName InstitutionalDepartmentName ManufacturerModelName
    DeviceSerialNumber SoftwareVersions ClinicalTrialCoordinatingCenterName ClinicalTrialSeriesID
    ClinicalTrialSeriesDescription TimezoneOffsetFromUTC"""
)
#: What ingest keeps of each instance for Search (its other attributes come from its model).
INSTANCE_LEVEL = _tags(
    """SOPClassUID SOPInstanceUID InstanceNumber Rows Columns BitsAllocated NumberOfFrames ContentDate ContentTime
    AcquisitionDate AcquisitionTime AcquisitionDateTime AcquisitionNumber ImageType InstanceCreationDate
    InstanceCreationTime TimezoneOffsetFromUTC"""
)

#: Attributes Search computes (counts, lists and availability) rather than reads from an instance.
COMPUTED: dict[int, Level] = {
    int(tag_for_keyword(k) or 0): level  # type: ignore[misc]  # every keyword exists
    for k, level in (
        ("ModalitiesInStudy", "study"),
        ("SOPClassesInStudy", "study"),
        ("NumberOfStudyRelatedSeries", "study"),
        ("NumberOfStudyRelatedInstances", "study"),
        ("NumberOfSeriesRelatedInstances", "series"),
        ("NumberOfPatientRelatedStudies", "patient"),
        ("NumberOfPatientRelatedSeries", "patient"),
        ("NumberOfPatientRelatedInstances", "patient"),
        ("InstanceAvailability", "study"),  # every level has these two (depth 0: any query may ask)
        ("RetrieveURL", "study"),
    )
}

_NAMED = (
    "SpecificCharacterSet PatientName PatientID PatientBirthDate PatientSex StudyInstanceUID StudyDate StudyTime "
    "AccessionNumber ReferringPhysicianName StudyID StudyDescription ModalitiesInStudy SOPClassesInStudy "
    "NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances SeriesInstanceUID Modality SeriesNumber "
    "SeriesDescription BodyPartExamined NumberOfSeriesRelatedInstances PerformedProcedureStepStartDate "
    "PerformedProcedureStepStartTime SeriesDate SeriesTime RequestAttributesSequence SOPClassUID SOPInstanceUID "
    "InstanceNumber Rows Columns BitsAllocated NumberOfFrames InstanceAvailability TimezoneOffsetFromUTC "
    "RetrieveURL NumberOfPatientRelatedStudies NumberOfPatientRelatedSeries NumberOfPatientRelatedInstances "
    "ScheduledProcedureStepID RequestedProcedureID"
)
#: Tags by keyword, for the attributes Search handles by name.
T = {k: int(tag_for_keyword(k) or 0) for k in _NAMED.split()}

#: The unique key of each level (PS3.4 C.6): its results always carry it and those of the levels above.
UNIQUE: dict[Level, int] = {
    "patient": T["PatientID"],
    "study": T["StudyInstanceUID"],
    "series": T["SeriesInstanceUID"],
    "instance": T["SOPInstanceUID"],
}


@dataclass(frozen=True)
class Required:
    """A return attribute of a level in QIDO-RS: ``always`` (type R, present even when empty) or present
    only when known (type C)."""

    tag: int
    always: bool


def _required(spec: str) -> tuple[Required, ...]:
    out = []
    for word in spec.split():
        optional = word.endswith("?")
        out.append(Required(int(tag_for_keyword(word.rstrip("?")) or 0), not optional))
    return tuple(out)


#: The return attributes of PS3.18 Tables 10.6.3-3 (study), -4 (series) and -5 (instance); for the patient
#: level (C-FIND only) the required and counted keys of PS3.4 C.6.1.1.2.
REQUIRED: dict[Level, tuple[Required, ...]] = {
    "patient": _required(
        "PatientName PatientID PatientBirthDate PatientSex NumberOfPatientRelatedStudies "
        "NumberOfPatientRelatedSeries NumberOfPatientRelatedInstances"
    ),
    "study": _required(
        "StudyDate StudyTime AccessionNumber InstanceAvailability? ModalitiesInStudy ReferringPhysicianName "
        "TimezoneOffsetFromUTC? RetrieveURL? PatientName PatientID PatientBirthDate PatientSex StudyInstanceUID "
        "StudyID NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances"
    ),
    "series": _required(
        "Modality TimezoneOffsetFromUTC? SeriesDescription RetrieveURL? SeriesInstanceUID SeriesNumber "
        "NumberOfSeriesRelatedInstances PerformedProcedureStepStartDate PerformedProcedureStepStartTime "
        "RequestAttributesSequence"
    ),
    "instance": _required(
        "SOPClassUID SOPInstanceUID InstanceAvailability? TimezoneOffsetFromUTC? RetrieveURL? InstanceNumber "
        "Rows? Columns? BitsAllocated? NumberOfFrames?"
    ),
}


def tag_level(tag: int) -> Level:
    """The level an attribute belongs to (see the module docstring)."""
    if tag in COMPUTED:
        return COMPUTED[tag]
    if tag in STUDY_LEVEL:
        return "study"
    if tag in SERIES_LEVEL:
        return "series"
    return "instance"


@functools.lru_cache(maxsize=4096)
def vr_of(tag: int) -> str:
    """The VR the data dictionary gives ``tag`` (the first of an ambiguous one; UN when unknown)."""
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


_HEX = re.compile(r"[0-9A-Fa-f]{8}")


def parse_attribute(text: str) -> tuple[int, ...]:
    """The tag path of a QIDO-RS ``{attributeID}``: a keyword or 8 hex digits, dot-separated into
    sequences (``RequestAttributesSequence.RequestedProcedureID``, ``00400275.00401001``).

    Raises
    ------
    InvalidInputError
        When a part is neither, or a part before the last is not a sequence.
    """
    parts = text.strip().split(".")
    path: list[int] = []
    for k, part in enumerate(parts):
        if _HEX.fullmatch(part):
            tag = int(part, 16)
        else:
            found = tag_for_keyword(part) if part else None
            if found is None:
                raise InvalidInputError(
                    f"{part!r} is neither a DICOM keyword nor a tag of 8 hex digits (in {text!r})", subject="attribute"
                )
            tag = int(found)
        if k < len(parts) - 1 and not (tag >> 16) % 2 and vr_of(tag) != "SQ":
            raise InvalidInputError(f"{part} is not a sequence; {text!r} cannot go into it", subject="attribute")
        path.append(tag)
    return tuple(path)


def name_of(path: tuple[int, ...]) -> str:
    """The path as keywords where the dictionary has them (for messages)."""
    return ".".join(keyword_for_tag(t) or f"{t:08X}" for t in path)


def is_private(tag: int) -> bool:
    return bool((tag >> 16) % 2)


__all__ = [
    "COMPUTED",
    "DEPTH",
    "INSTANCE_LEVEL",
    "LEVELS",
    "PATIENT_LEVEL",
    "REQUIRED",
    "SERIES_LEVEL",
    "STUDY_LEVEL",
    "UNIQUE",
    "Level",
    "Required",
    "T",
    "is_private",
    "name_of",
    "parse_attribute",
    "tag_level",
    "vr_of",
]
