"""Signed, append-only, verifiable audit log of identity-release decisions.

Public names are re-exported here; implementation lives in ``_``-prefixed
modules. Each block below is owned by one part of the package: append new
blocks (imports and __all__ entries) rather than editing another's.
"""

# --- cryptographic core: Merkle tree, signed notes, checkpoints, witness ---
from audit_log._checkpoint import (
    AddCheckpointRequest,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    TlogProof,
    format_add_checkpoint,
    format_tlog_proof,
    open_checkpoint,
    parse_add_checkpoint,
    parse_tlog_proof,
    sign_checkpoint,
    verify_tlog_proof,
)
from audit_log._errors import (
    AuditLogError,
    CheckpointError,
    NoteError,
    ProofError,
    WitnessConflict,
    WitnessError,
)
from audit_log._merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from audit_log._note import (
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    key_id,
    open_note,
)
from audit_log._witness import Witness, create_witness_app, hash_token

# isort: split
# --- durable log, entries, review, HTTP API (storage block) ---
from audit_log._api import create_app
from audit_log._config import Settings, WitnessSettings
from audit_log._entries import (
    Approval,
    BreakGlass,
    ConfigChange,
    Decision,
    Entry,
    KeyRotation,
    LeafRecord,
    Review,
    UnlockRequest,
    parse_entry,
    parse_leaf,
)
from audit_log._log import Appended, AuditLog, VerifyResult, WitnessEndpoint, verify_database
from audit_log._review import Anomaly, AnomalyConfig, find_anomalies
from audit_log._storage_errors import ConfigError, EntryError, StorageError, TamperError

# isort: split
# --- entry types added for the unlock service (admin, restriction, IG reads) ---
from audit_log._entries import Expiry, IgAccess, ProfessionalChange, Restriction
from audit_log._review import granted_decisions, request_entries

# isort: split
# --- IG officer's checks over a remote log (web pages and CLI share them) ---
from audit_log._remote import ReceiptCheck, check_cosignatures, check_successor, verify_receipt
from audit_log._review import DailyUnlocks, anomaly_report

__all__ = [
    # --- cryptographic core (names above) ---
    "EMPTY_ROOT",
    "HASH_SIZE",
    "AddCheckpointRequest",
    "AuditLogError",
    "Checkpoint",
    "CheckpointError",
    "CosignatureSigner",
    "CosignatureVerifier",
    "MerkleTree",
    "Note",
    "NoteError",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "TlogProof",
    "Witness",
    "WitnessConflict",
    "WitnessError",
    "add_signatures",
    "create_witness_app",
    "format_add_checkpoint",
    "format_tlog_proof",
    "hash_token",
    "key_id",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "parse_add_checkpoint",
    "parse_tlog_proof",
    "sign_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_tlog_proof",
    # --- end cryptographic core; append other blocks' names below ---
    # --- storage block (names above) ---
    "Anomaly",
    "AnomalyConfig",
    "Appended",
    "Approval",
    "AuditLog",
    "BreakGlass",
    "ConfigChange",
    "ConfigError",
    "Decision",
    "Entry",
    "EntryError",
    "KeyRotation",
    "LeafRecord",
    "Review",
    "Settings",
    "StorageError",
    "TamperError",
    "UnlockRequest",
    "VerifyResult",
    "WitnessEndpoint",
    "WitnessSettings",
    "create_app",
    "find_anomalies",
    "parse_entry",
    "parse_leaf",
    "verify_database",
    # --- end storage block ---
    # --- unlock-service entry types (names above) ---
    "Expiry",
    "IgAccess",
    "ProfessionalChange",
    "Restriction",
    "granted_decisions",
    "request_entries",
    # --- IG officer's checks (names above) ---
    "DailyUnlocks",
    "ReceiptCheck",
    "anomaly_report",
    "check_cosignatures",
    "check_successor",
    "verify_receipt",
]
