# ruff: noqa: E501  (a table of sentences reads better unwrapped)
"""Plain-language sentences for the unlock service's reason codes: the one table.

Every decision, refusal and error the unlock service answers carries a short
upper-case ``reason`` code (the same vocabulary as the audit log) and the
sentence :func:`reason_text` gives for it here, written for the social worker
or IG officer reading it, not for the engineer. A test checks every code the
unlock service can answer with has a sentence. The sentences name no person
and no family: they explain the rule, never the case.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["REASON_TEXT", "reason_text"]

_TEXT: dict[str, str] = {
    # -- granted, waiting, released ----------------------------------------------------
    "GRANTED": "Your request met every rule of the policy, so the family's details were released to you.",
    "GRANTED_WITH_APPROVAL": "A second professional approved your request, so the family's details can be released to you.",
    "GRANTED_BREAK_GLASS": "You used emergency access: the details were released without a second person, and an information governance officer will review this use.",
    "APPROVAL_REQUIRED": "This request needs a second professional to approve it before anything is released; it waits until they do or it expires.",
    "APPROVED": "The approver agreed to the request.",
    "EVALUATING": "The service is still deciding on this request.",
    # -- refusals by the policy -----------------------------------------------------------
    "PROFESSIONAL_INACTIVE": "Your account, or the requester's, is deactivated, so no request can be made or approved with it.",
    "ROLE_NOT_PERMITTED": "Your role does not allow this action.",
    "PURPOSE_NOT_LISTED": "The purpose you gave is not one the policy recognises; choose one of the listed purposes.",
    "PURPOSE_NOT_FOR_ROLE": "Your role may not ask for identities for this purpose.",
    "JUSTIFICATION_MISSING": "The justification is missing or too short; explain why you need these details.",
    "JUSTIFICATION_TOO_LONG": "The justification is longer than the policy allows; shorten it.",
    "RATE_LIMITED": "You have made as many requests as the policy allows for now; try again later.",
    "FAMILY_OPTED_OUT": "The family has opted out, so their details cannot be released.",
    "FAMILY_RESTRICTED": "Information governance has restricted this family, so their details cannot be released.",
    "CLEARANCE_INSUFFICIENT": "Your clearance is too far below what this family's case requires, even with an approver.",
    "BREAK_GLASS_NOT_ALLOWED": "Emergency access is not allowed for this purpose.",
    "BREAK_GLASS_CLEARANCE": "Emergency access cannot open a case above your own clearance; ask for approval instead.",
    "BREAK_GLASS_LIMIT": "You have used emergency access as often as the policy allows for now.",
    "BREAK_GLASS_COOLDOWN": "You used emergency access very recently; wait before using it again.",
    "SELF_APPROVAL": "Nobody may approve their own request.",
    "APPROVER_NOT_PERMITTED": "Your role may not approve requests.",
    "APPROVER_CLEARANCE_LOW": "Your clearance is below what this family's case requires, so you cannot approve it.",
    "APPROVAL_DECLINED": "The approver declined the request, so nothing was released.",
    "DENY_DEFAULT": "The policy did not allow this.",
    # -- the family's assessment ------------------------------------------------------------
    "ATTESTATION_MISSING": "There is no current assessment showing this family needs support, so nothing can be released.",
    "ATTESTATION_STALE": "The family's assessment is out of date; it must be reassessed before details can be released.",
    "ATTESTATION_NOT_CURRENT": "The family was reassessed after the grant, so this grant can no longer be used; make a new request.",
    "ATTESTATION_WRONG_KEY": "The family's assessment was not signed by the linkage service this service trusts, so it was not accepted.",
    "ATTESTATION_FORGED": "The family's assessment failed its signature check, so it was not accepted.",
    "ATTESTATION_WRONG_FAMILY": "The assessment received was about a different family, so it was not accepted.",
    "ATTESTATION_MALFORMED": "The family's assessment is incomplete, so it was not accepted.",
    "ATTESTATION_FUTURE": "The family's assessment is dated in the future, so it was not accepted.",
    "FAMILY_UNKNOWN": "No family with this id is known.",
    "FAMILY_SUPERSEDED": "This family's records were re-linked and it now has a different id; request the family under its new id.",
    "BELOW_THRESHOLD": "This family is not above the level of need at which details may be released.",
    "LINKAGE_UNAVAILABLE": "The linkage service could not be reached, so nothing was released; try again later.",
    # -- the request's state ----------------------------------------------------------------
    "REQUEST_EXPIRED": "Nobody approved the request in time, so it expired; make a new request if it is still needed.",
    "GRANT_EXPIRED": "The grant was not used in time, so it expired; make a new request if it is still needed.",
    "GRANT_ABANDONED": "The grant was closed unused after a service interruption; make a new request.",
    "ABANDONED": "The request was interrupted before it was recorded, so nothing happened; make it again.",
    "GRANT_USED": "This grant has already been used; each grant releases the details once.",
    "NOT_GRANTED": "This request has not been granted, so there is nothing to release.",
    "NOT_PENDING": "This request is no longer waiting for approval.",
    "NOT_REQUESTER": "Only the professional who made the request can receive the details.",
    "DECISION_IN_PROGRESS": "Someone else's answer to this request is being recorded; try again in a moment.",
    "ALREADY_ANSWERED": "You have already answered this request.",
    "CLAIM_LOST": "The service was interrupted while recording this; check the request's status before trying again.",
    # -- reviews and flags ------------------------------------------------------------------
    "REVIEW_CLOSED": "This emergency-access review has already been closed.",
    "SELF_REVIEW": "Nobody may review their own use of emergency access.",
    "NOTES_TOO_LONG": "The notes are longer than allowed; shorten them.",
    "FLAG_UNKNOWN": "That is not a flag the service knows.",
    "OPT_OUT_ADDED": "The family's opt-out was recorded; their details will not be released.",
    "RESTRICTED_ADDED": "The family's restriction was recorded; their details will not be released.",
    "OPT_OUT_REMOVED": "The family's opt-out was lifted.",
    "RESTRICTED_REMOVED": "The family's restriction was lifted.",
    "REVIEWS_LISTED": "An information governance officer listed the emergency-access reviews.",
    "UNLOCKS_LISTED": "An information governance officer listed a professional's requests.",
    "SUBJECT_ACCESS": "An information governance officer searched for what is held about a person.",
    "SUBJECT_QUERY_REFUSED": "The linkage service could not read the subject access search; encode it again with the agency client.",
    "SUBJECT_ACCESS_FAILED": "The subject access search failed; nothing was returned.",
    # -- administration ---------------------------------------------------------------------
    "NOT_ADMIN": "Only an administrator may do this.",
    "REGISTERED": "The professional was registered.",
    "REACTIVATED": "The professional's account was reactivated.",
    "DEACTIVATED": "The professional's account was deactivated.",
    "CLEARANCE_SET": "The professional's clearance was changed.",
    "KEY_ROTATED": "The key was replaced.",
    # -- signing in -------------------------------------------------------------------------
    "UNAUTHENTICATED": "You are not signed in; sign in again.",
    "TOKEN_MISSING": "You are not signed in; sign in again.",
    "TOKEN_MALFORMED": "Your sign-in could not be read; sign in again.",
    "TOKEN_FORGED": "Your sign-in could not be verified; sign in again.",
    "TOKEN_EXPIRED": "Your sign-in has expired; sign in again.",
    "TOKEN_NOT_YET_VALID": "Your sign-in is not valid yet; check your device's clock and sign in again.",
    "TOKEN_TOO_LONG": "Your sign-in lasts longer than the service accepts; sign in again.",
    "TOKEN_WRONG_ISSUER": "Your sign-in came from a service this one does not trust.",
    "TOKEN_WRONG_AUDIENCE": "Your sign-in was issued for a different service.",
    "TOKEN_KEY_MISMATCH": "Your sign-in belongs to a different key than the one registered for you; sign in again or ask an administrator.",
    "UNKNOWN_PROFESSIONAL": "Your account is not registered with this service; ask an administrator.",
    "SIGNATURE_MISSING": "The request was not signed with your key.",
    "SIGNATURE_MALFORMED": "The request's signature could not be read.",
    "SIGNATURE_INVALID": "The request's signature does not match your registered key.",
    "SIGNATURE_STALE": "The request was signed too long ago; check your device's clock and try again.",
    "REPLAYED": "This exact request was already received once, so it was not repeated.",
    # -- failures: nothing was released ------------------------------------------------------
    "AUDIT_UNAVAILABLE": "The decision could not be recorded in the audit log, so nothing was released; try again later.",
    "RECEIPT_UNAVAILABLE": "The audit receipt could not be produced, so nothing was released; try again later.",
    "STORAGE_UNAVAILABLE": "The service's database is unavailable, so nothing changed; try again later.",
    "RELEASE_FAILED": "The details could not be prepared, so nothing was released; tell your information governance team.",
    "BLOBS_MISMATCH": "The records received did not match the family's assessment, so nothing was released; tell your information governance team.",
    "BLOB_DOES_NOT_OPEN": "A record could not be opened, so nothing was released; tell your information governance team.",
    "BLOB_MISPLACED": "A record held another record's details, so nothing was released; tell your information governance team.",
    "SEAL_KEY_UNKNOWN": "A record was sealed with a key this service does not hold, so nothing was released; tell your information governance team.",
    "BAD_KEY": "Your registered key cannot receive released details; ask an administrator to register a new one.",
    "BAD_RELEASE": "The released details do not open with your key or are not the ones for this request.",
    "NOT_FOUND": "Nothing with this id was found.",
    "CONFLICT": "This cannot be done in the request's current state.",
    "CONFIG": "The service is not configured correctly; tell your administrator.",
    "ERROR": "Something went wrong in the service; nothing was released.",
    "UNEXPECTED_ANSWER": "The unlock service's answer could not be read; nothing was opened. Tell your information governance team.",
}

REASON_TEXT: Final[Mapping[str, str]] = MappingProxyType(_TEXT)


def reason_text(code: str) -> str:
    """The plain-language sentence for reason ``code`` (a generic one for a code not listed)."""
    text = _TEXT.get(code)
    if text is not None:
        return text
    return f"The service answered with reason {code}; ask your information governance team what it means."
