// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IStudyLedger
/// @notice StudyLedger's custom errors, events and stored records: what an
///         indexer or auditor decodes. `Commitment` and `HospitalStatus` are
///         declared in StudyLedger itself: the ABI names them there
///         (`internalType` "struct StudyLedger.Commitment"), and the ABI is
///         pinned (tests/test_contract_abi.py).
interface IStudyLedger {
    // ----------------------------------------------------------------- records

    struct Study {
        bytes32 configHash;
        bytes32 initialModelHash;
        bytes32 contextHash;
        // one packed slot, read on every round
        address aggregator;
        uint64 expiry;
        // The last round is not stored: round r exists iff
        // _rounds[studyId][r].aggregateHash != 0 (never zero, enforced), and
        // rounds fill strictly in order, so a write per round is saved and
        // views find the last round by binary search.
        uint64 registeredAt;
        // distinct consented hospitals whose ModelRelease signatures a release needs (same slot as registeredAt)
        uint64 releaseQuorum;
        string codeVersion;
        address[] hospitals;
    }

    /// @dev Two hashes and one packed slot per round.
    struct RoundRecord {
        bytes32 aggregateHash;
        bytes32 commitmentsHash;
        uint64 totalSamples;
        uint64 timestamp;
        uint64 blockNumber;
        uint32 participants;
        uint8 mode;
    }

    // ------------------------------------------------------------------ errors

    error NotStudyAdmin(address account);
    error StudyAlreadyExists(bytes32 studyId);
    error UnknownStudy(bytes32 studyId);
    error ZeroAggregator();
    error ExpiryInPast(uint64 expiry, uint256 nowTimestamp);
    error NoHospitals();
    error HospitalsBudgetsLengthMismatch(uint256 hospitals, uint256 budgets);
    error ZeroHospitalAddress(uint256 index);
    error HospitalRegisteredTwice(address hospital);
    error NotAggregator(bytes32 studyId, address caller);
    error HospitalNotRegistered(bytes32 studyId, address hospital);
    error HospitalAlreadyConsented(bytes32 studyId, address hospital);
    error HospitalNotConsented(bytes32 studyId, address hospital);
    error HospitalHasWithdrawn(bytes32 studyId, address hospital);
    error StudyExpired(bytes32 studyId, uint64 expiry, uint256 nowTimestamp);
    error RoundAlreadyRecorded(bytes32 studyId, uint64 round);
    error RoundOutOfOrder(bytes32 studyId, uint64 round);
    error ZeroAggregateHash();
    error PrevHashMismatch(bytes32 studyId, bytes32 expected, bytes32 got);
    error NoCommitments();
    error SignatureCountMismatch(uint256 commitments, uint256 signatures);
    error CommitmentStudyMismatch(uint256 index, bytes32 got);
    error CommitmentRoundMismatch(uint256 index, uint64 got);
    error CommitmentPrevHashMismatch(uint256 index, bytes32 got);
    error InvalidSignature(uint256 index);
    error MalformedCommitment(uint256 index);
    error DuplicateHospital(bytes32 studyId, address hospital);
    error EpsilonOverBudget(address hospital, uint64 epsilonMicro, uint64 budgetMicro);
    error EpsilonDecreased(address hospital, uint64 epsilonMicro, uint64 lastEpsilonMicro);
    error SampleCountMismatch(uint64 totalSamples, uint256 sumOfCommitments);
    error RoundNotRecorded(bytes32 studyId, uint64 round);
    error ModelAlreadyReleased(bytes32 studyId, uint64 round);
    error ZeroModelHash();
    error NoParticipants();
    error ZeroCommitmentsRoot();
    error InvalidSampleCap(uint64 maxSamples);
    error SampleCountAboveCap(bytes32 studyId, address hospital, uint64 sampleCount, uint64 cap);
    error ZeroReleaseQuorum();
    error InvalidReleaseSignature(uint256 index);
    error ReleaseSignerNotHospital(bytes32 studyId, address signer);
    error DuplicateReleaseSigner(bytes32 studyId, address hospital);
    error ReleaseQuorumNotMet(bytes32 studyId, uint64 round, uint256 signers, uint64 quorum);
    error InvalidRequesterSignature();
    error QueryHashMismatch(bytes32 queryHash);
    error NoQueryCharges();
    error MalformedQueryCharge(uint256 index);

    // ------------------------------------------------------------------ events

    event StudyRegistered(
        bytes32 indexed studyId,
        bytes32 configHash,
        bytes32 initialModelHash,
        bytes32 contextHash,
        string codeVersion,
        address indexed aggregator,
        uint64 expiry,
        uint256 hospitalCount
    );
    event HospitalRegistered(bytes32 indexed studyId, address indexed hospital, uint64 budgetMicro);
    /// @dev `maxSamples`: the hospital's registered cohort size (an upper bound on its record count);
    ///      `recordRound` refuses a commitment of this hospital with a larger sample count.
    event HospitalConsented(bytes32 indexed studyId, address indexed hospital, uint64 maxSamples);
    event HospitalWithdrew(bytes32 indexed studyId, address indexed hospital);
    event RoundRecorded(
        bytes32 indexed studyId,
        uint64 indexed round,
        bytes32 prevGlobalHash,
        bytes32 aggregateHash,
        uint64 totalSamples,
        bytes32 commitmentsHash,
        uint32 participants
    );
    /// @dev Signatures are not re-emitted (they cost log gas for nothing):
    ///      they sit in the calldata of the transaction that emitted this
    ///      log, and `commitmentsHash` binds the EIP-712 digests.
    /// @dev Study and round are not repeated here (one topic costs 375 gas
    ///      per hospital): the RoundRecorded log of the same transaction
    ///      carries both. Filter by hospital, join by transaction hash.
    event CommitmentRecorded(address indexed hospital, bytes32 updateHash, uint64 sampleCount, uint64 epsilonMicro);
    /// @dev `signers`: the consented hospitals whose EIP-712 ModelRelease signatures the release carried
    ///      (at least the study's `releaseQuorum`, distinct, in calldata order).
    /// @dev A descriptive-statistics query (docs/STATS.md): `querySpec` is the canonical JSON whose
    ///      domain-tagged SHA-256 is `queryHash` (checked on-chain); one QueryCharged log per hospital follows.
    event QueryRecorded(
        bytes32 indexed studyId,
        bytes32 indexed queryHash,
        address indexed requester,
        string purpose,
        string querySpec,
        uint32 hospitals
    );
    /// @dev A hospital's signed epsilon charge for a query and its composed total after it (training and
    ///      queries); the signature is in the calldata of the same transaction.
    event QueryCharged(
        bytes32 indexed studyId,
        bytes32 indexed queryHash,
        address indexed hospital,
        uint64 epsilonMicro,
        uint64 totalEpsilonMicro
    );
    event ModelReleased(bytes32 indexed studyId, uint64 indexed round, bytes32 modelHash, address[] signers);
}
