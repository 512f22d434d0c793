"""The contract's ABI and storage layout, pinned: refactoring the Solidity source must not change either.

Version 2 (issues 18 and 19): ``consent`` takes the hospital's cohort cap, ``registerStudy`` the release
quorum, ``releaseModel`` the hospitals' ModelRelease signatures; the Study record packs ``releaseQuorum``
beside ``registeredAt`` (slot 4, offset 8) and the hospital word's top 56 bits hold the cap.
Version 3 (issue 15): the ``Commitment`` struct (EIP-712 ``RoundCommitmentV2``) ends with ``startModelHash``.
Issue 16 adds ``recordQuery`` (statistics queries with hospitals' signed QueryCharge structs), its events
and errors; storage is unchanged.

Deployed contracts, the artifact the clients load and every auditor's decoder
rely on the ABI; a redeployment reading old state (or an upgrade) relies on
the storage layout. Both are compiled fresh from the source and compared with
what they were before the source was split into StudyLedger.sol and its
declarations: the ABI as a set of canonical lines (name, types, parameter
names, indexed, mutability) plus the qualified names solc writes in
``internalType``; the storage layout slot by slot, struct members included,
without solc's AST ids.
"""

from __future__ import annotations

import shutil

import pytest

from ledger.compile import CompileError, solc_output

PINNED_ABI = {
    # issue 16: statistics queries (recordQuery, QueryCharge)
    "error MalformedQueryCharge(uint256 index)",
    "error NoQueryCharges()",
    "error QueryHashMismatch(bytes32 queryHash)",
    "error InvalidRequesterSignature()",
    "event QueryCharged(bytes32 indexed studyId, bytes32 indexed queryHash, address indexed hospital, uint64 epsilonMicro, uint64 totalEpsilonMicro)",
    "event QueryRecorded(bytes32 indexed studyId, bytes32 indexed queryHash, address indexed requester, string purpose, string querySpec, uint32 hospitals)",
    "function QUERY_CHARGE_TYPEHASH() view returns (bytes32)",
    "function QUERY_DOMAIN() view returns (bytes)",
    "function queryChargeDigest((bytes32 studyId,bytes32 queryHash,uint64 epsilonMicro,uint64 totalEpsilonMicro) c) view returns (bytes32)",
    "function recordQuery(bytes32 studyId, bytes32 queryHash, string purpose, string querySpec, (bytes32 studyId,bytes32 queryHash,uint64 epsilonMicro,uint64 totalEpsilonMicro)[] charges, bytes[] signatures, bytes requesterSignature) nonpayable",
    "function QUERY_REQUEST_TYPEHASH() view returns (bytes32)",
    "function requestSigner(bytes32 studyId, bytes32 queryHash, string purpose, bytes signature) view returns (address signer)",
    "constructor(address admin) nonpayable",
    "error AccessControlBadConfirmation()",
    "error AccessControlUnauthorizedAccount(address account, bytes32 neededRole)",
    "error CommitmentPrevHashMismatch(uint256 index, bytes32 got)",
    "error CommitmentRoundMismatch(uint256 index, uint64 got)",
    "error CommitmentStudyMismatch(uint256 index, bytes32 got)",
    "error DuplicateHospital(bytes32 studyId, address hospital)",
    "error DuplicateReleaseSigner(bytes32 studyId, address hospital)",
    "error ECDSAInvalidSignature()",
    "error ECDSAInvalidSignatureLength(uint256 length)",
    "error ECDSAInvalidSignatureS(bytes32 s)",
    "error EpsilonDecreased(address hospital, uint64 epsilonMicro, uint64 lastEpsilonMicro)",
    "error EpsilonOverBudget(address hospital, uint64 epsilonMicro, uint64 budgetMicro)",
    "error ExpiryInPast(uint64 expiry, uint256 nowTimestamp)",
    "error HospitalAlreadyConsented(bytes32 studyId, address hospital)",
    "error HospitalHasWithdrawn(bytes32 studyId, address hospital)",
    "error HospitalNotConsented(bytes32 studyId, address hospital)",
    "error HospitalNotRegistered(bytes32 studyId, address hospital)",
    "error HospitalRegisteredTwice(address hospital)",
    "error HospitalsBudgetsLengthMismatch(uint256 hospitals, uint256 budgets)",
    "error InvalidReleaseSignature(uint256 index)",
    "error InvalidSampleCap(uint64 maxSamples)",
    "error InvalidShortString()",
    "error InvalidSignature(uint256 index)",
    "error MalformedCommitment(uint256 index)",
    "error ModelAlreadyReleased(bytes32 studyId, uint64 round)",
    "error NoCommitments()",
    "error NoHospitals()",
    "error NoParticipants()",
    "error NotAggregator(bytes32 studyId, address caller)",
    "error NotStudyAdmin(address account)",
    "error PrevHashMismatch(bytes32 studyId, bytes32 expected, bytes32 got)",
    "error ReleaseQuorumNotMet(bytes32 studyId, uint64 round, uint256 signers, uint64 quorum)",
    "error ReleaseSignerNotHospital(bytes32 studyId, address signer)",
    "error RoundAlreadyRecorded(bytes32 studyId, uint64 round)",
    "error RoundNotRecorded(bytes32 studyId, uint64 round)",
    "error RoundOutOfOrder(bytes32 studyId, uint64 round)",
    "error SampleCountAboveCap(bytes32 studyId, address hospital, uint64 sampleCount, uint64 cap)",
    "error SampleCountMismatch(uint64 totalSamples, uint256 sumOfCommitments)",
    "error SignatureCountMismatch(uint256 commitments, uint256 signatures)",
    "error StringTooLong(string str)",
    "error StudyAlreadyExists(bytes32 studyId)",
    "error StudyExpired(bytes32 studyId, uint64 expiry, uint256 nowTimestamp)",
    "error UnknownStudy(bytes32 studyId)",
    "error ZeroAggregateHash()",
    "error ZeroAggregator()",
    "error ZeroCommitmentsRoot()",
    "error ZeroHospitalAddress(uint256 index)",
    "error ZeroModelHash()",
    "error ZeroReleaseQuorum()",
    "event CommitmentRecorded(address indexed hospital, bytes32 updateHash, uint64 sampleCount, uint64 epsilonMicro)",
    "event EIP712DomainChanged()",
    "event HospitalConsented(bytes32 indexed studyId, address indexed hospital, uint64 maxSamples)",
    "event HospitalRegistered(bytes32 indexed studyId, address indexed hospital, uint64 budgetMicro)",
    "event HospitalWithdrew(bytes32 indexed studyId, address indexed hospital)",
    "event ModelReleased(bytes32 indexed studyId, uint64 indexed round, bytes32 modelHash, address[] signers)",
    "event RoleAdminChanged(bytes32 indexed role, bytes32 indexed previousAdminRole, bytes32 indexed newAdminRole)",
    "event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender)",
    "event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender)",
    "event RoundRecorded(bytes32 indexed studyId, uint64 indexed round, bytes32 prevGlobalHash, bytes32 aggregateHash, uint64 totalSamples, bytes32 commitmentsHash, uint32 participants)",
    "event StudyRegistered(bytes32 indexed studyId, bytes32 configHash, bytes32 initialModelHash, bytes32 contextHash, string codeVersion, address indexed aggregator, uint64 expiry, uint256 hospitalCount)",
    "function DEFAULT_ADMIN_ROLE() view returns (bytes32)",
    "function MAX_SAMPLE_CAP() view returns (uint64)",
    "function MODEL_RELEASE_TYPEHASH() view returns (bytes32)",
    "function MODE_MERKLE() view returns (uint8)",
    "function MODE_SIGNED() view returns (uint8)",
    "function ROUND_COMMITMENT_TYPEHASH() view returns (bytes32)",
    "function STUDY_ADMIN_ROLE() view returns (bytes32)",
    "function addHospitals(bytes32 studyId, address[] hospitals, uint64[] epsilonBudgetsMicro) nonpayable",
    "function commitmentDigest((bytes32 studyId,uint64 round,bytes32 prevGlobalHash,bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash) c) view returns (bytes32)",
    "function commitmentLeaf(address hospital, (bytes32 studyId,uint64 round,bytes32 prevGlobalHash,bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash) c) view returns (bytes32)",
    "function consent(bytes32 studyId, uint64 maxSamples) nonpayable",
    "function domainSeparator() view returns (bytes32)",
    "function eip712Domain() view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions)",
    "function getHospital(bytes32 studyId, address hospital) view returns (uint64 budgetMicro, uint64 lastEpsilonMicro, uint64 lastRound, uint8 status, uint64 maxSamples)",
    "function getRoleAdmin(bytes32 role) view returns (bytes32)",
    "function getRound(bytes32 studyId, uint64 round) view returns (bytes32 prevGlobalHash, bytes32 aggregateHash, uint64 totalSamples, bytes32 commitmentsHash, uint32 participants, uint64 timestamp, uint64 blockNumber, uint8 mode)",
    "function getStudy(bytes32 studyId) view returns (bytes32 configHash, bytes32 initialModelHash, bytes32 contextHash, string codeVersion, address aggregator, uint64 expiry, uint64 lastRound, uint64 registeredAt, address[] hospitals, uint64 releaseQuorum)",
    "function grantRole(bytes32 role, address account) nonpayable",
    "function hasRole(bytes32 role, address account) view returns (bool)",
    "function lastRound(bytes32 studyId) view returns (uint64)",
    "function merkleMember(bytes32 studyId, uint64 round, (bytes32 studyId,uint64 round,bytes32 prevGlobalHash,bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash) c, bytes signature, bytes32[] proof) view returns (address)",
    "function recordRound(bytes32 studyId, uint64 round, bytes32 prevGlobalHash, bytes32 aggregateHash, uint64 totalSamples, (bytes32 studyId,uint64 round,bytes32 prevGlobalHash,bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash)[] commitments, bytes[] signatures) nonpayable",
    "function recordRoundMerkle(bytes32 studyId, uint64 round, bytes32 prevGlobalHash, bytes32 aggregateHash, uint64 totalSamples, bytes32 commitmentsRoot, uint32 participants, uint64 maxEpsilonMicro) nonpayable",
    "function recoverCommitmentSigner((bytes32 studyId,uint64 round,bytes32 prevGlobalHash,bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash) c, bytes signature) view returns (address)",
    "function registerStudy(bytes32 studyId, bytes32 configHash, bytes32 initialModelHash, bytes32 contextHash, string codeVersion, address aggregator, uint64 expiry, address[] hospitals, uint64[] epsilonBudgetsMicro, uint64 releaseQuorum) nonpayable",
    "function releaseDigest(bytes32 studyId, uint64 round, bytes32 modelHash) view returns (bytes32)",
    "function releaseModel(bytes32 studyId, uint64 round, bytes32 modelHash, bytes[] signatures) nonpayable",
    "function releasedModel(bytes32 studyId, uint64 round) view returns (bytes32)",
    "function renounceRole(bytes32 role, address callerConfirmation) nonpayable",
    "function revokeRole(bytes32 role, address account) nonpayable",
    "function supportsInterface(bytes4 interfaceId) view returns (bool)",
    "function withdraw(bytes32 studyId) nonpayable",
}

#: ``internalType`` of every parameter whose type is not elementary: (function, parameter, internalType).
PINNED_INTERNAL_TYPES = {
    ("commitmentDigest", "c", "struct StudyLedger.Commitment"),
    ("commitmentLeaf", "c", "struct StudyLedger.Commitment"),
    ("getHospital", "status", "enum StudyLedger.HospitalStatus"),
    ("merkleMember", "c", "struct StudyLedger.Commitment"),
    ("recordRound", "commitments", "struct StudyLedger.Commitment[]"),
    ("recoverCommitmentSigner", "c", "struct StudyLedger.Commitment"),
    ("queryChargeDigest", "c", "struct StudyLedger.QueryCharge"),
    ("recordQuery", "charges", "struct StudyLedger.QueryCharge[]"),
}

PINNED_STORAGE = [
    "0:0 _roles mapping(bytes32 => struct RoleData [64 bytes] {0:0 hasRole mapping(address => bool); 1:0 adminRole bytes32})",
    "1:0 _nameFallback string",
    "2:0 _versionFallback string",
    "3:0 _studies mapping(bytes32 => struct Study [224 bytes] {0:0 configHash bytes32; 1:0 initialModelHash bytes32; 2:0 contextHash bytes32; 3:0 aggregator address; 3:20 expiry uint64; 4:0 registeredAt uint64; 4:8 releaseQuorum uint64; 5:0 codeVersion string; 6:0 hospitals address[]})",
    "4:0 _hospitals mapping(bytes32 => mapping(address => uint256))",
    "5:0 _rounds mapping(bytes32 => mapping(uint64 => struct RoundRecord [96 bytes] {0:0 aggregateHash bytes32; 1:0 commitmentsHash bytes32; 2:0 totalSamples uint64; 2:8 timestamp uint64; 2:16 blockNumber uint64; 2:24 participants uint32; 2:28 mode uint8}))",
    "6:0 _releasedModels mapping(bytes32 => mapping(uint64 => bytes32))",
]


def _param(p: dict) -> str:
    t = p["type"]
    if t.startswith("tuple"):
        t = "(" + ",".join(_param(c) for c in p["components"]) + ")" + t[5:]
    return " ".join(x for x in (t, "indexed" if p.get("indexed") else "", p.get("name", "")) if x)


def canonical_abi(abi: list) -> set:
    out = set()
    for e in abi:
        head = e["type"] + (" " + e["name"] if "name" in e else "")
        line = f"{head}({', '.join(_param(p) for p in e.get('inputs', []))})"
        if "stateMutability" in e:
            line += " " + e["stateMutability"]
        if e.get("outputs"):
            line += f" returns ({', '.join(_param(p) for p in e['outputs'])})"
        if e.get("anonymous"):
            line += " anonymous"
        out.add(line)
    return out


def _storage_type(types: dict, key: str) -> str:
    t = types[key]
    if t["encoding"] == "mapping":
        return f"mapping({_storage_type(types, t['key'])} => {_storage_type(types, t['value'])})"
    if t["encoding"] == "dynamic_array":
        return _storage_type(types, t["base"]) + "[]"
    if "members" in t:
        members = "; ".join(_storage_slot(types, m) for m in t["members"])
        return f"struct {t['label'].rsplit('.', 1)[-1]} [{t['numberOfBytes']} bytes] {{{members}}}"
    return t["label"]


def _storage_slot(types: dict, var: dict) -> str:
    return f"{var['slot']}:{var['offset']} {var['label']} {_storage_type(types, var['type'])}"


def canonical_storage(layout: dict) -> list:
    return [_storage_slot(layout["types"], v) for v in layout["storage"]]


def _internal_types(abi: list) -> set:
    return {
        (e.get("name", e["type"]), p["name"], p["internalType"])
        for e in abi
        for p in e.get("inputs", []) + e.get("outputs", [])
        if p["internalType"] != p["type"]
    }


@pytest.fixture(scope="module")
def solc() -> dict:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: cannot compile the contract")
    try:
        return solc_output(("abi", "storageLayout"))
    except CompileError as exc:  # solc missing from node_modules
        pytest.skip(f"solc unavailable: {exc}")


def test_abi_is_unchanged(solc):
    # Act
    got = canonical_abi(solc["abi"])
    # Assert
    assert got - PINNED_ABI == set(), "added to the ABI"
    assert PINNED_ABI - got == set(), "gone from the ABI"
    assert len(solc["abi"]) == len(PINNED_ABI)


def test_abi_internal_types_are_unchanged(solc):
    assert _internal_types(solc["abi"]) == PINNED_INTERNAL_TYPES


def test_storage_layout_is_unchanged(solc):
    assert canonical_storage(solc["storageLayout"]) == PINNED_STORAGE
