"""Indicator vocabulary: the events and measures agencies report about a person.

Every indicator type belongs to one problem area of Troubled Families Phase 2
(DOMAIN.md, six headline problems) and carries the unit of its value. The
programme ruleset (linkage service) refers to these names; agencies map their
own columns onto them. Adding a type here is a protocol change.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ProblemArea(StrEnum):
    """The six headline problems of Troubled Families Phase 2 (plus context)."""

    CRIME = "crime_asb"
    EDUCATION = "education"
    CHILDREN_NEED_HELP = "children_need_help"
    WORK_FINANCE = "work_finance"
    DOMESTIC_ABUSE = "domestic_abuse"
    HEALTH = "health"
    HOUSING = "housing"
    CONTEXT = "context"


Unit = Literal["flag", "count", "percent", "months", "weeks", "gbp"]


class IndicatorType(StrEnum):
    """Every indicator an agency may report. Values are stable wire names."""

    # 1. crime and anti-social behaviour
    YOUTH_OFFENDING = "youth_offending"
    ADULT_OFFENDING = "adult_offending"
    PRISON_LEAVER = "prison_leaver"
    ASB_FURTHER_ACTION = "asb_further_action"
    ASB_NO_FURTHER_ACTION = "asb_no_further_action"
    # 2. school attendance
    ATTENDANCE_PCT = "attendance_pct"
    FIXED_TERM_EXCLUSIONS = "fixed_term_exclusions"
    PERMANENT_EXCLUSION = "permanent_exclusion"
    NOT_ON_ROLL = "not_on_roll"
    ALTERNATIVE_PROVISION = "alternative_provision"
    MONTHS_MISSING_FROM_SCHOOL = "months_missing_from_school"
    # 3. children who need help
    CHILD_IN_NEED = "child_in_need"
    CHILD_PROTECTION_PLAN = "child_protection_plan"
    EARLY_HELP_ASSESSMENT = "early_help_assessment"
    EXPLOITATION_RISK = "exploitation_risk"
    YOUNG_CARER = "young_carer"
    # 4. worklessness and financial exclusion
    OUT_OF_WORK_BENEFITS = "out_of_work_benefits"
    MONTHS_NEET = "months_neet"
    RENT_ARREARS_GBP = "rent_arrears_gbp"
    PROBLEM_DEBT = "problem_debt"
    CONTINUOUS_EMPLOYMENT = "continuous_employment"
    # 5. domestic violence and abuse
    DV_INCIDENTS = "dv_incidents"
    POLICE_CALLOUTS = "police_callouts"
    MARAC_REFERRAL = "marac_referral"
    # 6. health
    MONTHS_MENTAL_HEALTH = "months_mental_health"
    MONTHS_ALCOHOL_MISUSE = "months_alcohol_misuse"
    MONTHS_DRUG_MISUSE = "months_drug_misuse"
    PHYSICAL_HEALTH = "physical_health"
    # housing (Family Progress Data)
    EVICTIONS = "evictions"
    HOMELESSNESS_APPLICATIONS = "homelessness_applications"
    WEEKS_TEMPORARY_ACCOMMODATION = "weeks_temporary_accommodation"
    # context: family composition
    EXPECTANT_PARENT = "expectant_parent"
    IN_EDUCATION_OR_TRAINING = "in_education_or_training"


INDICATOR_INFO: dict[IndicatorType, tuple[ProblemArea, Unit]] = {
    IndicatorType.YOUTH_OFFENDING: (ProblemArea.CRIME, "count"),
    IndicatorType.ADULT_OFFENDING: (ProblemArea.CRIME, "count"),
    IndicatorType.PRISON_LEAVER: (ProblemArea.CRIME, "flag"),
    IndicatorType.ASB_FURTHER_ACTION: (ProblemArea.CRIME, "count"),
    IndicatorType.ASB_NO_FURTHER_ACTION: (ProblemArea.CRIME, "count"),
    IndicatorType.ATTENDANCE_PCT: (ProblemArea.EDUCATION, "percent"),
    IndicatorType.FIXED_TERM_EXCLUSIONS: (ProblemArea.EDUCATION, "count"),
    IndicatorType.PERMANENT_EXCLUSION: (ProblemArea.EDUCATION, "flag"),
    IndicatorType.NOT_ON_ROLL: (ProblemArea.EDUCATION, "flag"),
    IndicatorType.ALTERNATIVE_PROVISION: (ProblemArea.EDUCATION, "flag"),
    IndicatorType.MONTHS_MISSING_FROM_SCHOOL: (ProblemArea.EDUCATION, "months"),
    IndicatorType.CHILD_IN_NEED: (ProblemArea.CHILDREN_NEED_HELP, "flag"),
    IndicatorType.CHILD_PROTECTION_PLAN: (ProblemArea.CHILDREN_NEED_HELP, "flag"),
    IndicatorType.EARLY_HELP_ASSESSMENT: (ProblemArea.CHILDREN_NEED_HELP, "flag"),
    IndicatorType.EXPLOITATION_RISK: (ProblemArea.CHILDREN_NEED_HELP, "flag"),
    IndicatorType.YOUNG_CARER: (ProblemArea.CHILDREN_NEED_HELP, "flag"),
    IndicatorType.OUT_OF_WORK_BENEFITS: (ProblemArea.WORK_FINANCE, "flag"),
    IndicatorType.MONTHS_NEET: (ProblemArea.WORK_FINANCE, "months"),
    IndicatorType.RENT_ARREARS_GBP: (ProblemArea.WORK_FINANCE, "gbp"),
    IndicatorType.PROBLEM_DEBT: (ProblemArea.WORK_FINANCE, "flag"),
    IndicatorType.CONTINUOUS_EMPLOYMENT: (ProblemArea.WORK_FINANCE, "flag"),
    IndicatorType.DV_INCIDENTS: (ProblemArea.DOMESTIC_ABUSE, "count"),
    IndicatorType.POLICE_CALLOUTS: (ProblemArea.DOMESTIC_ABUSE, "count"),
    IndicatorType.MARAC_REFERRAL: (ProblemArea.DOMESTIC_ABUSE, "flag"),
    IndicatorType.MONTHS_MENTAL_HEALTH: (ProblemArea.HEALTH, "months"),
    IndicatorType.MONTHS_ALCOHOL_MISUSE: (ProblemArea.HEALTH, "months"),
    IndicatorType.MONTHS_DRUG_MISUSE: (ProblemArea.HEALTH, "months"),
    IndicatorType.PHYSICAL_HEALTH: (ProblemArea.HEALTH, "flag"),
    IndicatorType.EVICTIONS: (ProblemArea.HOUSING, "count"),
    IndicatorType.HOMELESSNESS_APPLICATIONS: (ProblemArea.HOUSING, "count"),
    IndicatorType.WEEKS_TEMPORARY_ACCOMMODATION: (ProblemArea.HOUSING, "weeks"),
    IndicatorType.EXPECTANT_PARENT: (ProblemArea.CONTEXT, "flag"),
    IndicatorType.IN_EDUCATION_OR_TRAINING: (ProblemArea.CONTEXT, "flag"),
}


class Indicator(BaseModel):
    """One indicator value about one person, as at a date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: IndicatorType
    value: float = Field(ge=0, allow_inf_nan=False)
    date: dt.date
